//! Unit tests of the decision rules and the SQL they render, on snapshots written by hand.

use super::catalog::{ColumnStat, ForeignKey, KeyStat, Snapshot, TableStat};
use super::decide::{Backfill, Placement, PlanOptions, propose};
use super::render::{citus_sql, key_sql, source_sql};

const MB: i64 = 1024 * 1024;

fn table(name: &str, bytes: i64, cols: &[&str], pk: &[&str]) -> TableStat {
    TableStat {
        schema: "s".into(),
        name: name.into(),
        bytes,
        // about 100 bytes a row
        rows: Some(bytes / 100),
        columns: cols
            .iter()
            .map(|c| ColumnStat {
                name: c.to_string(),
                type_name: "bigint".into(),
                not_null: true,
            })
            .collect(),
        keys: vec![KeyStat {
            name: format!("{name}_pkey"),
            primary: true,
            constraint: true,
            columns: pk.iter().map(|c| c.to_string()).collect(),
        }],
        replica_identity: pk.iter().map(|c| c.to_string()).collect(),
    }
}

fn fk(
    snap: &Snapshot,
    name: &str,
    from: &str,
    cols: &[&str],
    to: &str,
    refs: &[&str],
) -> ForeignKey {
    let idx = |n: &str| snap.tables.iter().position(|t| t.name == n).unwrap();
    ForeignKey {
        name: name.into(),
        table: idx(from),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        ref_table: idx(to),
        ref_columns: refs.iter().map(|c| c.to_string()).collect(),
    }
}

fn options() -> PlanOptions {
    PlanOptions {
        min_size: 100 * MB,
        tenant_column: None,
        shard_count: Some(32),
    }
}

fn placement(snap: &Snapshot, plan: &super::decide::Plan, name: &str) -> Placement {
    let i = snap.tables.iter().position(|t| t.name == name).unwrap();
    plan.tables[i].placement.clone()
}

fn dist(column: &str, group: usize) -> Placement {
    Placement::Distributed {
        column: column.into(),
        group,
        backfill: None,
    }
}

/// users <- orders <- order_items -> products; users -> countries; settings alone.
fn storefront() -> Snapshot {
    let mut users = table(
        "users",
        500 * MB,
        &["user_id", "email", "country"],
        &["user_id"],
    );
    users.keys.push(KeyStat {
        name: "users_email_key".into(),
        primary: false,
        constraint: true,
        columns: vec!["email".into()],
    });
    let mut snap = Snapshot {
        database: "shop".into(),
        tables: vec![
            users,
            table(
                "orders",
                1024 * MB,
                &["order_id", "user_id", "total"],
                &["order_id"],
            ),
            table(
                "order_items",
                2048 * MB,
                &["order_id", "line", "user_id", "product_id"],
                &["order_id", "line"],
            ),
            table("products", MB, &["id", "name"], &["id"]),
            table("countries", 16 * 1024, &["code"], &["code"]),
            table("settings", 8 * 1024, &["k", "v"], &["k"]),
        ],
        foreign_keys: Vec::new(),
    };
    snap.foreign_keys = vec![
        fk(
            &snap,
            "orders_user_id_fkey",
            "orders",
            &["user_id"],
            "users",
            &["user_id"],
        ),
        fk(
            &snap,
            "order_items_order_id_fkey",
            "order_items",
            &["order_id"],
            "orders",
            &["order_id"],
        ),
        fk(
            &snap,
            "order_items_product_id_fkey",
            "order_items",
            &["product_id"],
            "products",
            &["id"],
        ),
        fk(
            &snap,
            "users_country_fkey",
            "users",
            &["country"],
            "countries",
            &["code"],
        ),
    ];
    snap
}

#[test]
fn storefront_is_distributed_by_the_user() {
    let snap = storefront();
    let plan = propose(&snap, &options());
    let tenant = plan.tenant.clone().unwrap();
    assert_eq!(
        (tenant.table, tenant.key.as_str(), tenant.column.as_str()),
        (Some(0), "user_id", "user_id")
    );
    assert_eq!(placement(&snap, &plan, "users"), dist("user_id", 0));
    assert_eq!(placement(&snap, &plan, "orders"), dist("user_id", 0));
    assert_eq!(placement(&snap, &plan, "order_items"), dist("user_id", 0));
    assert_eq!(placement(&snap, &plan, "products"), Placement::Reference);
    assert_eq!(placement(&snap, &plan, "countries"), Placement::Reference);
    assert_eq!(placement(&snap, &plan, "settings"), Placement::Local);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].tables, [0, 1, 2]);

    assert_eq!(
        key_sql(&snap, &plan),
        [
            "ALTER TABLE \"s\".\"order_items\" DROP CONSTRAINT \"order_items_order_id_fkey\"",
            "ALTER TABLE \"s\".\"users\" DROP CONSTRAINT \"users_email_key\", ADD CONSTRAINT \"users_email_key\" UNIQUE (\"user_id\", \"email\")",
            "ALTER TABLE \"s\".\"orders\" DROP CONSTRAINT \"orders_pkey\", ADD CONSTRAINT \"orders_pkey\" PRIMARY KEY (\"user_id\", \"order_id\")",
            "ALTER TABLE \"s\".\"order_items\" DROP CONSTRAINT \"order_items_pkey\", ADD CONSTRAINT \"order_items_pkey\" PRIMARY KEY (\"user_id\", \"order_id\", \"line\")",
            "ALTER TABLE \"s\".\"order_items\" ADD CONSTRAINT \"order_items_order_id_fkey\" FOREIGN KEY (\"user_id\", \"order_id\") REFERENCES \"s\".\"orders\" (\"user_id\", \"order_id\")",
        ]
    );
    assert_eq!(
        citus_sql(&snap, &plan),
        [
            "SELECT create_reference_table('\"s\".\"products\"')",
            "SELECT create_reference_table('\"s\".\"countries\"')",
            "SELECT create_distributed_table('\"s\".\"users\"', 'user_id', shard_count => 32)",
            "SELECT create_distributed_table('\"s\".\"orders\"', 'user_id', colocate_with => '\"s\".\"users\"')",
            "SELECT create_distributed_table('\"s\".\"order_items\"', 'user_id', colocate_with => '\"s\".\"users\"')",
        ]
    );
    // the source's replica identities must carry the distribution column
    assert_eq!(
        source_sql(&snap, &plan),
        [
            "CREATE UNIQUE INDEX CONCURRENTLY \"orders_pgwarp_identity\" ON \"s\".\"orders\" (\"user_id\", \"order_id\")",
            "ALTER TABLE \"s\".\"orders\" REPLICA IDENTITY USING INDEX \"orders_pgwarp_identity\"",
            "CREATE UNIQUE INDEX CONCURRENTLY \"order_items_pgwarp_identity\" ON \"s\".\"order_items\" (\"user_id\", \"order_id\", \"line\")",
            "ALTER TABLE \"s\".\"order_items\" REPLICA IDENTITY USING INDEX \"order_items_pgwarp_identity\"",
        ]
    );
    let warnings = plan.warnings.join("\n");
    assert!(warnings.contains("s.orders: primary key orders_pkey (order_id) must include the distribution column: becomes (user_id, order_id)"), "{warnings}");
    assert!(warnings.contains("s.order_items: foreign key order_items_order_id_fkey (order_id) -> s.orders (order_id) must include the distribution column on both sides"), "{warnings}");
}

/// companies <- projects <- tasks <- comments; tasks -> tags; audit_log and settings alone.
fn chain() -> Snapshot {
    let mut snap = Snapshot {
        database: "saas".into(),
        tables: vec![
            table("companies", 200 * MB, &["id", "name"], &["id"]),
            table("projects", 500 * MB, &["id", "company_id"], &["id"]),
            table("tasks", 2048 * MB, &["id", "project_id", "tag_id"], &["id"]),
            table("comments", 3072 * MB, &["id", "task_id"], &["id"]),
            table("tags", MB, &["id"], &["id"]),
            table("audit_log", 5000 * MB, &["id", "at"], &["id"]),
            table("settings", 8 * 1024, &["k"], &["k"]),
        ],
        foreign_keys: Vec::new(),
    };
    snap.foreign_keys = vec![
        fk(
            &snap,
            "projects_company_id_fkey",
            "projects",
            &["company_id"],
            "companies",
            &["id"],
        ),
        fk(
            &snap,
            "tasks_project_id_fkey",
            "tasks",
            &["project_id"],
            "projects",
            &["id"],
        ),
        fk(
            &snap,
            "tasks_tag_id_fkey",
            "tasks",
            &["tag_id"],
            "tags",
            &["id"],
        ),
        fk(
            &snap,
            "comments_task_id_fkey",
            "comments",
            &["task_id"],
            "tasks",
            &["id"],
        ),
    ];
    snap
}

#[test]
fn a_chain_of_foreign_keys_is_backfilled_parents_first() {
    let snap = chain();
    let plan = propose(&snap, &options());
    let tenant = plan.tenant.clone().unwrap();
    assert_eq!(
        (tenant.table, tenant.key.as_str(), tenant.column.as_str()),
        (Some(0), "id", "company_id")
    );
    assert_eq!(placement(&snap, &plan, "companies"), dist("id", 0));
    assert_eq!(placement(&snap, &plan, "projects"), dist("company_id", 0));
    let backfilled = |via: usize, depth: usize| Placement::Distributed {
        column: "company_id".into(),
        group: 0,
        backfill: Some(Backfill {
            column: "company_id".into(),
            type_name: "bigint".into(),
            via,
            depth,
        }),
    };
    assert_eq!(placement(&snap, &plan, "tasks"), backfilled(1, 1));
    assert_eq!(placement(&snap, &plan, "comments"), backfilled(3, 2));
    assert_eq!(placement(&snap, &plan, "tags"), Placement::Reference);
    assert_eq!(placement(&snap, &plan, "audit_log"), dist("id", 1));
    assert_eq!(placement(&snap, &plan, "settings"), Placement::Local);

    let source = source_sql(&snap, &plan);
    assert_eq!(
        &source[..6],
        [
            "ALTER TABLE \"s\".\"tasks\" ADD COLUMN \"company_id\" bigint",
            "UPDATE \"s\".\"tasks\" c SET \"company_id\" = p.\"company_id\" FROM \"s\".\"projects\" p WHERE c.\"project_id\" = p.\"id\"",
            "ALTER TABLE \"s\".\"tasks\" ALTER COLUMN \"company_id\" SET NOT NULL",
            "ALTER TABLE \"s\".\"comments\" ADD COLUMN \"company_id\" bigint",
            "UPDATE \"s\".\"comments\" c SET \"company_id\" = p.\"company_id\" FROM \"s\".\"tasks\" p WHERE c.\"task_id\" = p.\"id\"",
            "ALTER TABLE \"s\".\"comments\" ALTER COLUMN \"company_id\" SET NOT NULL",
        ]
    );
    let keys = key_sql(&snap, &plan);
    assert!(keys.contains(&"ALTER TABLE \"s\".\"tasks\" ADD CONSTRAINT \"tasks_project_id_fkey\" FOREIGN KEY (\"company_id\", \"project_id\") REFERENCES \"s\".\"projects\" (\"company_id\", \"id\")".to_owned()), "{keys:#?}");
    assert!(keys.contains(&"ALTER TABLE \"s\".\"comments\" ADD CONSTRAINT \"comments_task_id_fkey\" FOREIGN KEY (\"company_id\", \"task_id\") REFERENCES \"s\".\"tasks\" (\"company_id\", \"id\")".to_owned()), "{keys:#?}");
    // the root's key is the distribution column: no change, and no change to the FK to it
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("companies_pkey") || k.contains("projects_company_id_fkey")),
        "{keys:#?}"
    );
    let citus = citus_sql(&snap, &plan);
    assert_eq!(
        citus,
        [
            "SELECT create_reference_table('\"s\".\"tags\"')",
            "SELECT create_distributed_table('\"s\".\"companies\"', 'id', shard_count => 32)",
            "SELECT create_distributed_table('\"s\".\"projects\"', 'company_id', colocate_with => '\"s\".\"companies\"')",
            "SELECT create_distributed_table('\"s\".\"tasks\"', 'company_id', colocate_with => '\"s\".\"companies\"')",
            "SELECT create_distributed_table('\"s\".\"comments\"', 'company_id', colocate_with => '\"s\".\"companies\"')",
            "SELECT create_distributed_table('\"s\".\"audit_log\"', 'id', colocate_with => 'none')",
        ]
    );
}

#[test]
fn tenant_column_option_overrides_the_detection() {
    let snap = storefront();
    let plan = propose(
        &snap,
        &PlanOptions {
            tenant_column: Some("order_id".into()),
            ..options()
        },
    );
    let tenant = plan.tenant.clone().unwrap();
    assert_eq!(
        (tenant.table, tenant.column.as_str()),
        (Some(1), "order_id")
    );
    assert_eq!(placement(&snap, &plan, "orders"), dist("order_id", 0));
    assert_eq!(placement(&snap, &plan, "order_items"), dist("order_id", 0));
    // users reaches no order: its own group; the foreign key across groups goes
    assert_eq!(placement(&snap, &plan, "users"), dist("user_id", 1));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w
                .contains("foreign key orders_user_id_fkey to s.users is not supported by Citus")),
        "{:#?}",
        plan.warnings
    );
    assert!(key_sql(&snap, &plan).contains(
        &"ALTER TABLE \"s\".\"orders\" DROP CONSTRAINT \"orders_user_id_fkey\"".to_owned()
    ));
}

#[test]
fn small_databases_stay_local() {
    let snap = storefront();
    let plan = propose(
        &snap,
        &PlanOptions {
            min_size: 100_000 * MB,
            ..options()
        },
    );
    // nothing is large: no tenant, nothing distributed
    assert!(plan.tenant.is_none());
    assert!(plan.tables.iter().all(|t| t.placement == Placement::Local));
    assert!(citus_sql(&snap, &plan).is_empty());
}

#[test]
fn a_small_table_referencing_a_distributed_one_is_distributed_with_it() {
    let mut snap = storefront();
    snap.tables
        .push(table("wishlists", MB, &["id", "user_id"], &["id"]));
    let fk = fk(
        &snap,
        "wishlists_user_id_fkey",
        "wishlists",
        &["user_id"],
        "users",
        &["user_id"],
    );
    snap.foreign_keys.push(fk);
    let plan = propose(&snap, &options());
    // Citus has no foreign keys from local or reference tables to distributed ones
    assert_eq!(placement(&snap, &plan, "wishlists"), dist("user_id", 0));
}

#[test]
fn a_lookup_table_reached_by_every_table_is_not_the_tenant() {
    // countries is reached by users, orders and order_items, as users is: its few rows lose
    let mut snap = storefront();
    let plan = propose(&snap, &options());
    assert_eq!(plan.tenant.unwrap().table, Some(0));
    // with the row counts swapped, countries would win: the rule is the row count
    snap.tables[4].rows = Some(i64::MAX);
    assert_eq!(propose(&snap, &options()).tenant.unwrap().table, Some(4));
}
