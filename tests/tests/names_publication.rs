//! Publication management with hostile names: creating, recognising as unchanged, and
//! altering a publication whose name and tables need quoting (`fault_support::names`), in
//! table and schema scope. A name compared in the wrong form (quoted against raw, folded
//! case) shows up as a needless ALTER or as a publication that never matches.

mod fault_support;

use fault_support::names;
use pgwarp::conn::{self, ConnConfig};
use pgwarp::source::admin::{
    PublicationChange, PublicationScope, QualifiedName, ensure_publication, publication_tables,
};
use pgwarp_tests::{PgServer, quote_ident};

const SCHEMA: &str = "Schéma \"X\".v2";
const PUBLICATION: &str = "Pub 'x' \"Größe\"\\";

fn config(conn_string: &str) -> ConnConfig {
    ConnConfig::parse(conn_string).expect("a valid connection string")
}

fn sorted(mut v: Vec<QualifiedName>) -> Vec<QualifiedName> {
    v.sort();
    v
}

#[tokio::test]
async fn publication_of_hostile_tables_is_created_recognised_and_altered() {
    let db = PgServer::shared().create_database("names_pub").unwrap();
    db.execute(&format!(
        "CREATE SCHEMA {s}; SET search_path TO {s}; {ddl}",
        s = quote_ident(SCHEMA),
        ddl = names::main_ddl()
    ))
    .unwrap();
    let (client, _conn) = conn::connect(&config(&db.conn_string())).await.unwrap();
    let all: Vec<QualifiedName> = names::main_tables()
        .into_iter()
        .map(|(name, _)| QualifiedName::new(SCHEMA, name))
        .collect();

    let scope = PublicationScope::Tables(all.clone());
    assert_eq!(
        ensure_publication(&client, PUBLICATION, &scope)
            .await
            .unwrap(),
        PublicationChange::Created
    );
    let published = publication_tables(&client, PUBLICATION).await.unwrap();
    assert_eq!(published.map(sorted), Some(sorted(all.clone())));
    // the same tables again: recognised, not altered
    assert_eq!(
        ensure_publication(&client, PUBLICATION, &scope)
            .await
            .unwrap(),
        PublicationChange::Unchanged
    );

    // one table fewer: altered to exactly that
    let fewer: Vec<QualifiedName> = all[1..].to_vec();
    assert_eq!(
        ensure_publication(
            &client,
            PUBLICATION,
            &PublicationScope::Tables(fewer.clone())
        )
        .await
        .unwrap(),
        PublicationChange::Altered
    );
    let published = publication_tables(&client, PUBLICATION).await.unwrap();
    assert_eq!(published.map(sorted), Some(sorted(fewer)));

    // the hostile schema as a whole
    let schemas = PublicationScope::Schemas(vec![SCHEMA.to_owned()]);
    assert_eq!(
        ensure_publication(&client, PUBLICATION, &schemas)
            .await
            .unwrap(),
        PublicationChange::Altered
    );
    assert_eq!(
        ensure_publication(&client, PUBLICATION, &schemas)
            .await
            .unwrap(),
        PublicationChange::Unchanged
    );
    let published = publication_tables(&client, PUBLICATION).await.unwrap();
    assert_eq!(published.map(sorted), Some(sorted(all)));
}
