//! Tests of the Citus-shaped cluster builder: the fake catalog is what a real Citus 13.2
//! writes (compared with rows taken from a real cluster), shard tables are where the catalog
//! says, the SQL versions of Citus functions agree with Citus, and splits behave like
//! `citus_split_shard_by_split_points`.

use std::collections::BTreeMap;

use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};

const SAMPLE: &str = include_str!("../src/cluster/testdata/citus-13.2-catalog-sample.txt");
const HASH_VECTORS: &str = include_str!("../src/cluster/testdata/citus-13.2-hash-vectors.csv");

fn sample_spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL)",
            "user_id",
            32,
        )
        .distributed_colocated(
            "orders",
            "CREATE TABLE orders (user_id bigint NOT NULL, order_id bigint NOT NULL, \
             amount numeric(12,2), PRIMARY KEY (user_id, order_id), \
             FOREIGN KEY (user_id) REFERENCES users (user_id))",
            "user_id",
            "users",
        )
        .reference(
            "products",
            "CREATE TABLE products (product_id int PRIMARY KEY, title text)",
        )
}

/// The sample's sections: query text -> rows (header and "(N rows)" removed).
fn sample_sections() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in SAMPLE.lines() {
        if let Some(query) = line.strip_prefix("## ") {
            current = Some(query.to_owned());
            out.insert(query.to_owned(), Vec::new());
        } else if let Some(q) = &current {
            let rows = out.get_mut(q).unwrap();
            if line.starts_with('(') && line.ends_with(" rows)") || line.ends_with(" row)") {
                current = None;
            } else {
                rows.push(line.to_owned());
            }
        }
    }
    // Drop the header lines.
    for rows in out.values_mut() {
        if !rows.is_empty() {
            rows.remove(0);
        }
    }
    out
}

/// Runs `query` on a node with the fixture's schema first on the search_path (as `public` is
/// in the sample), rows joined with `|` like `psql -At`.
fn psql_like(node: &pgwarp_tests::cluster::FixtureNode, schema: &str, query: &str) -> Vec<String> {
    node.query_rows(&format!("SET search_path = \"{schema}\"; {query}"))
        .unwrap()
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn fake_catalog_matches_a_real_citus_13_2_catalog() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    if cluster.is_real() {
        return; // ids depend on the real cluster's history
    }
    let fixture = cluster.create(&sample_spec()).unwrap();
    let sections = sample_sections();
    let schema = fixture.schema();
    for node in fixture.nodes() {
        for query in [
            "select logicalrelid, partmethod, partkey, colocationid, repmodel, autoconverted from pg_dist_partition order by 1",
            "select logicalrelid, shardid, shardstorage, shardminvalue, shardmaxvalue from pg_dist_shard where logicalrelid::text in ('users','orders','products') order by shardid",
            "select p.* from pg_dist_placement p join pg_dist_shard s using (shardid) where logicalrelid::text in ('users','orders','products') order by placementid",
            "select * from pg_dist_colocation order by 1",
            "select column_to_column_name('orders'::regclass, partkey) from pg_dist_partition where logicalrelid='orders'::regclass",
        ] {
            let want = sections
                .get(query)
                .unwrap_or_else(|| panic!("sample lacks {query}"));
            assert!(!want.is_empty());
            assert_eq!(
                &psql_like(node, schema, query),
                want,
                "node {} query {query}",
                node.port
            );
        }

        // pg_dist_node: same shape, with our ports in place of the sample's.
        let mut ports: Vec<u16> = fixture.nodes().iter().map(|n| n.port).collect();
        ports[1..].sort_unstable();
        let want: Vec<String> = sections["select * from pg_dist_node order by nodeid"]
            .iter()
            .map(|row| {
                row.replace("55433", &ports[0].to_string())
                    .replace("55434", &ports[1].to_string())
                    .replace("55435", &ports[2].to_string())
            })
            .collect();
        assert_eq!(
            psql_like(node, schema, "select * from pg_dist_node order by nodeid"),
            want
        );
        let local: i32 = node
            .query_scalar("SELECT groupid FROM pg_dist_local_group")
            .unwrap();
        assert_eq!(local, node.groupid);
    }
    // Column names, types and order exactly as in Citus 13.2 (ROUTING.md §1.1).
    let columns = |table: &str| -> String {
        fixture
            .coordinator()
            .query_scalar(&format!(
                "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' \
                 ORDER BY attnum) FROM pg_attribute \
                 WHERE attrelid = 'pg_catalog.{table}'::regclass AND attnum > 0"
            ))
            .unwrap()
    };
    for (table, want) in [
        (
            "pg_dist_partition",
            "logicalrelid regclass, partmethod \"char\", partkey text, colocationid integer, \
             repmodel \"char\", autoconverted boolean",
        ),
        (
            "pg_dist_shard",
            "logicalrelid regclass, shardid bigint, shardstorage \"char\", shardminvalue text, \
             shardmaxvalue text",
        ),
        (
            "pg_dist_placement",
            "placementid bigint, shardid bigint, shardstate integer, shardlength bigint, \
             groupid integer",
        ),
        (
            "pg_dist_node",
            "nodeid integer, groupid integer, nodename text, nodeport integer, noderack text, \
             hasmetadata boolean, isactive boolean, noderole noderole, nodecluster name, \
             metadatasynced boolean, shouldhaveshards boolean, nodeisclone boolean, \
             nodeprimarynodeid integer",
        ),
        (
            "pg_dist_colocation",
            "colocationid integer, shardcount integer, replicationfactor integer, \
             distributioncolumntype oid, distributioncolumncollation oid",
        ),
        ("pg_dist_schema", "schemaid oid, colocationid integer"),
        ("pg_dist_local_group", "groupid integer"),
    ] {
        assert_eq!(columns(table), want, "{table}");
    }
    // Also found fully qualified, and visible to unprivileged roles, as in Citus.
    let coordinator = fixture.coordinator();
    let n: i64 = coordinator
        .query_scalar("SELECT count(*) FROM pg_catalog.pg_dist_shard")
        .unwrap();
    assert_eq!(n, 65);
    let public_read: bool = coordinator
        .query_scalar(
            "SELECT has_table_privilege('public', 'pg_catalog.pg_dist_placement', 'SELECT')",
        )
        .unwrap();
    assert!(public_read);
    let version: String = coordinator
        .query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
        .unwrap();
    assert_eq!(version, "13.2-1");
    let (orders, first) = ("orders", 102040);
    assert_eq!(
        coordinator
            .query_scalar::<String>(&format!(
                "SELECT shard_name('{schema}.{orders}'::regclass, {first}, false)"
            ))
            .unwrap(),
        format!("{schema}.orders_102040")
    );
}

#[test]
fn shard_tables_exist_exactly_where_the_catalog_places_them() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let fixture = cluster.create(&sample_spec()).unwrap();
    let schema = fixture.schema();
    for table in ["users", "orders", "products"] {
        let shards = fixture.shards(table).unwrap();
        assert_eq!(shards.len(), if table == "products" { 1 } else { 32 });
        for shard in &shards {
            for node in fixture.nodes() {
                let exists: bool = node
                    .query_scalar(&format!(
                        "SELECT to_regclass('{}') IS NOT NULL",
                        shard.shard_table
                    ))
                    .unwrap();
                assert_eq!(
                    exists,
                    shard.groups.contains(&node.groupid),
                    "{} on group {}",
                    shard.shard_table,
                    node.groupid
                );
            }
        }
        // Shells on every node, as on an MX cluster.
        for node in fixture.nodes() {
            let shell: bool = node
                .query_scalar(&format!(
                    "SELECT to_regclass('\"{schema}\".{table}') IS NOT NULL"
                ))
                .unwrap();
            assert!(shell);
        }
    }
    let products = &fixture.shards("products").unwrap()[0];
    assert_eq!(products.groups, vec![0, 1, 2]);

    // Shard tables carry the spec's constraints, renamed like Citus renames them, and the
    // foreign key points at the colocated sibling shard.
    let (users0, orders0) = (
        &fixture.shards("users").unwrap()[0],
        &fixture.shards("orders").unwrap()[0],
    );
    let worker = fixture.node_of_group(orders0.groups[0]).unwrap();
    let constraints: Vec<String> = worker
        .query_rows(&format!(
            "SELECT conname FROM pg_constraint WHERE conrelid = '{}'::regclass ORDER BY 1",
            orders0.shard_table
        ))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(
        constraints,
        vec![
            format!("orders_pkey_{}", orders0.shardid),
            "orders_user_id_fkey".to_owned()
        ]
    );
    let fk_target: String = worker
        .query_scalar(&format!(
            "SELECT confrelid::regclass::text FROM pg_constraint \
             WHERE conrelid = '{}'::regclass AND contype = 'f'",
            orders0.shard_table
        ))
        .unwrap();
    assert_eq!(fk_target, users0.shard_table.replace('"', ""));
    if !cluster.is_real() {
        assert_eq!(
            (users0.shardid, orders0.shardid, products.shardid),
            (102008, 102040, 102072)
        );
    }

    // Rows routed by hash land where get_shard_id_for_distribution_column says.
    let n = fixture
        .insert_routed(
            "users",
            "SELECT g::bigint, 'user ' || g FROM generate_series(1, 500) g",
        )
        .unwrap();
    assert_eq!(n, 500);
    assert_eq!(fixture.count("users").unwrap(), 500);
    let shard_of_42 = fixture.shard_id_for("users", "42::bigint").unwrap();
    let rows = fixture
        .shard_rows(
            "users",
            shard_of_42,
            group_of(&fixture, "users", shard_of_42),
        )
        .unwrap();
    assert!(rows.contains(&vec![Some("42".to_owned()), Some("user 42".to_owned())]));
    // Nothing leaked into the shells (on a real cluster the shell is a distributed table).
    for node in fixture.nodes().iter().filter(|_| !cluster.is_real()) {
        let in_shell: i64 = node
            .query_scalar(&format!("SELECT count(*) FROM \"{schema}\".users"))
            .unwrap();
        assert_eq!(in_shell, 0);
    }
    assert_eq!(
        fixture
            .insert_routed(
                "products",
                "SELECT g, 'p' || g FROM generate_series(1, 7) g"
            )
            .unwrap(),
        7
    );
    let counts = fixture.placement_counts("products").unwrap();
    let p = products.shardid;
    assert_eq!(counts, vec![(p, 0, 7), (p, 1, 7), (p, 2, 7)]);
}

fn group_of(fixture: &CitusFixture, table: &str, shardid: i64) -> i32 {
    fixture
        .shards(table)
        .unwrap()
        .into_iter()
        .find(|s| s.shardid == shardid)
        .unwrap()
        .groups[0]
}

#[test]
fn fake_worker_hash_agrees_with_citus_vectors() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let fixture = cluster.create(&ClusterSpec::new()).unwrap();
    let coordinator = fixture.coordinator();
    // The CSV goes in as one dollar-quoted literal and is split and unquoted by PostgreSQL.
    let rows = coordinator
        .query_rows(&format!(
            "SET search_path = \"{schema}\"; SET TimeZone = 'UTC'; \
             CREATE TABLE vectors AS \
               SELECT f[1] AS typ, f[2]::int AS shard_count, \
                      CASE WHEN f[3] LIKE '\"%' \
                           THEN replace(substr(f[3], 2, length(f[3]) - 2), '\"\"', '\"') \
                           ELSE f[3] END AS lit, \
                      f[4]::int AS hash \
               FROM (SELECT regexp_match(line, \
                       '^([^,]+),([^,]+),(\"(?:[^\"]|\"\")*\"|[^,]*),([^,]+),([^,]+)$') AS f \
                     FROM unnest(string_to_array($vectors${HASH_VECTORS}$vectors$, E'\\n')) AS line \
                     WHERE line <> '' AND line NOT LIKE 'typ,%') AS x; \
             CREATE FUNCTION pg_temp.h(t text, v text) RETURNS int LANGUAGE plpgsql AS $$ \
             DECLARE r int; \
             BEGIN \
               EXECUTE format('SELECT pg_catalog.worker_hash(%L::%s)', v, \
                 CASE t WHEN 'bpchar1' THEN 'character(1)' WHEN 'bpchar' THEN 'character(20)' \
                        ELSE t END) INTO r; \
               RETURN r; \
             END $$; \
             SELECT typ, count(*), count(*) FILTER (WHERE pg_temp.h(typ, lit) = hash) \
             FROM vectors GROUP BY typ ORDER BY typ",
            schema = fixture.schema()
        ))
        .unwrap();
    let mut total = 0;
    for row in &rows {
        let (typ, n, ok) = (
            row[0].clone().unwrap(),
            row[1].clone().unwrap(),
            row[2].clone().unwrap(),
        );
        total += n.parse::<i64>().unwrap();
        assert_eq!(
            n, ok,
            "worker_hash disagrees with Citus for some {typ} vectors"
        );
    }
    assert_eq!(rows.len(), 21);
    assert_eq!(total, 4044);
}

#[test]
fn routing_functions_of_the_fake_catalog() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let long = "nl_checky_12345678901234567890123456789012345678901234567890";
    let spec = ClusterSpec::new()
        .distributed(
            long,
            &format!("CREATE TABLE {long} (id int PRIMARY KEY)"),
            "id",
            4,
        )
        .distributed(
            "texts",
            "CREATE TABLE texts (k text PRIMARY KEY, v int)",
            "k",
            7,
        );
    let fixture = cluster.create(&spec).unwrap();
    let c = fixture.coordinator();
    if !fixture.is_real() {
        // Citus's own regression examples of the long-name rule (ROUTING.md §1.5).
        for (name, id, want) in [
            (
                "abcde_012345678901234567890123456789012345678901234567890123456",
                4160710162_i64,
                "abcde_0123456789012345678901234567890123456_f7ff6612_4160710162",
            ),
            (
                long,
                225002,
                "nl_checky_1234567890123456789012345678901234567_b16df46d_225002",
            ),
            ("orders", 102008, "orders_102008"),
        ] {
            let sql: String = c
                .query_scalar(&format!("SELECT pgwarp_append_shard_id('{name}', {id})"))
                .unwrap();
            assert_eq!(sql, want);
        }
    }
    // Long names on the workers, found through the harness's own rule.
    let shards = fixture.shards(long).unwrap();
    assert_eq!(shards.len(), 4);
    for s in &shards {
        assert!(s.shard_table.contains("_b16df46d_"), "{}", s.shard_table);
        let via_sql: String = c
            .query_scalar(&format!(
                "SELECT shard_name('{}'::regclass, {}, false)",
                fixture.qualified(long).unwrap(),
                s.shardid
            ))
            .unwrap();
        assert_eq!(via_sql, s.shard_table.replace('"', ""));
    }
    assert_eq!(
        fixture
            .insert_routed(long, "SELECT generate_series(1, 100)")
            .unwrap(),
        100
    );
    assert_eq!(fixture.count(long).unwrap(), 100);

    // ROUTING.md §1.7, verbatim, runs on the fake coordinator.
    let q17 = format!(
        "SELECT p.logicalrelid::oid AS relid, n_s.nspname, c.relname, p.partmethod, p.repmodel, p.colocationid, \
                column_to_column_name(p.logicalrelid, p.partkey) AS dist_column, \
                a.atttypid, a.atttypmod, a.attcollation, s.shardid, \
                CASE WHEN p.partmethod = 'h' THEN s.shardminvalue::int4 END AS hmin, \
                CASE WHEN p.partmethod = 'h' THEN s.shardmaxvalue::int4 END AS hmax, \
                shard_name(p.logicalrelid, s.shardid, false) AS qualified_shard_name, \
                pl.placementid, pl.groupid, nd.nodeid, nd.nodename, nd.nodeport, nd.isactive \
         FROM pg_dist_partition p \
         JOIN pg_class c ON c.oid = p.logicalrelid \
         JOIN pg_namespace n_s ON n_s.oid = c.relnamespace \
         LEFT JOIN pg_attribute a ON p.partkey IS NOT NULL AND a.attrelid = p.logicalrelid \
                                 AND a.attname = column_to_column_name(p.logicalrelid, p.partkey) \
         JOIN pg_dist_shard s ON s.logicalrelid = p.logicalrelid \
         JOIN pg_dist_placement pl ON pl.shardid = s.shardid \
         JOIN pg_dist_node nd ON nd.groupid = pl.groupid AND nd.noderole = 'primary' AND nd.nodecluster = 'default' \
         WHERE p.logicalrelid = '{}'::regclass ORDER BY hmin NULLS LAST, s.shardid",
        fixture.qualified("texts").unwrap()
    );
    let rows = c.query_rows(&q17).unwrap();
    assert_eq!(rows.len(), 7);
    let first = &rows[0];
    assert_eq!(first[6].as_deref(), Some("k"));
    assert_eq!(first[7].as_deref(), Some("25"));
    assert_eq!(first[9].as_deref(), Some("100"));
    assert_eq!(first[11].as_deref(), Some("-2147483648"));
    assert_eq!(rows[6][12].as_deref(), Some("2147483647"));
    let partkey: String = c
        .query_scalar(&format!(
            "SELECT partkey FROM pg_dist_partition WHERE logicalrelid = '{}'::regclass",
            fixture.qualified("texts").unwrap()
        ))
        .unwrap();
    assert_eq!(
        partkey,
        "{VAR :varno 1 :varattno 1 :vartype 25 :vartypmod -1 :varcollid 100 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location -1}"
    );

    // get_shard_id_for_distribution_column agrees with the vectors' shard index (7 shards).
    let texts = fixture.shards("texts").unwrap();
    for line in HASH_VECTORS
        .lines()
        .filter(|l| l.starts_with("text,7,"))
        .take(40)
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            continue; // quoted literals with commas
        }
        let index: usize = fields[4].parse().unwrap();
        let raw = fields[2];
        let unquoted = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            None => raw.to_owned(),
        };
        let lit = unquoted.replace('\'', "''");
        let got = fixture
            .shard_id_for("texts", &format!("'{lit}'::text"))
            .unwrap();
        assert_eq!(got, texts[index].shardid, "literal {lit}");
    }
}

#[test]
fn every_table_kind_gets_citus_metadata() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let spec = ClusterSpec::new()
        .prelude("CREATE TYPE mood AS ENUM ('sad', 'happy')")
        .distributed(
            "events",
            "CREATE TABLE events (id bigserial, tenant int NOT NULL, m mood, PRIMARY KEY (tenant, id)) PARTITION BY RANGE (id)",
            "tenant",
            4,
        )
        .distributed_colocated("events_low", "CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (1000)", "tenant", "events")
        .reference("countries", "CREATE TABLE countries (code text PRIMARY KEY)")
        .single_shard("settings", "CREATE TABLE settings (k text PRIMARY KEY, v text)")
        .single_shard_colocated("settings_log", "CREATE TABLE settings_log (k text, at timestamptz)", "settings")
        .tenant("acme", "invoices", "CREATE TABLE invoices (id int PRIMARY KEY)")
        .tenant("acme", "payments", "CREATE TABLE payments (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)")
        .citus_local("audit", "CREATE TABLE audit (id int, msg text)");
    let fixture = cluster.create(&spec).unwrap();
    let c = fixture.coordinator();
    let acme = fixture.tenant_schema("acme").unwrap().to_owned();
    assert_eq!(fixture.schema_of("payments").unwrap(), acme);

    // Colocation ids (and with them single-shard placements) depend on a real cluster's history.
    if !cluster.is_real() {
        // §1.2 classification, as citus_tables would report it.
        let kinds = c
            .query_rows(
                "SELECT c.relname, CASE WHEN colocationid IN (SELECT colocationid FROM pg_dist_schema) THEN 'schema' \
                        WHEN partkey IS NOT NULL THEN 'distributed' WHEN repmodel = 't' THEN 'reference' \
                        WHEN colocationid = 0 THEN 'local' ELSE 'distributed' END, partmethod, repmodel, colocationid, \
                        coalesce(column_to_column_name(logicalrelid, partkey), '<none>') \
                 FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid ORDER BY c.relname",
            )
            .unwrap();
        let kinds: Vec<String> = kinds
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(Option::unwrap_or_default)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "audit|local|n|s|0|<none>",
                "countries|reference|n|t|2|<none>",
                "events|distributed|h|s|1|tenant",
                "events_low|distributed|h|s|1|tenant",
                "invoices|schema|n|s|4|<none>",
                "payments|schema|n|s|4|<none>",
                "settings|distributed|n|s|3|<none>",
                "settings_log|distributed|n|s|3|<none>",
            ]
        );
        let schema_row: String = c
            .query_scalar(
                "SELECT schemaid::regnamespace::text || ':' || colocationid FROM pg_dist_schema",
            )
            .unwrap();
        assert_eq!(schema_row, format!("{acme}:4"));
        // Placements: single-shard by colocation id % 2 workers (3 -> group 2, 4 -> group 1);
        // Citus local in group 0.
        let groups = |t: &str| {
            fixture
                .shards(t)
                .unwrap()
                .into_iter()
                .map(|s| s.groups)
                .collect::<Vec<_>>()
        };
        assert_eq!(groups("settings"), vec![vec![2]]);
        assert_eq!(groups("settings_log"), vec![vec![2]]);
        assert_eq!(groups("invoices"), vec![vec![1]]);
        assert_eq!(groups("payments"), vec![vec![1]]);
        assert_eq!(groups("audit"), vec![vec![0]]);
        assert_eq!(groups("countries"), vec![vec![0, 1, 2]]);
    }

    // Partition shards are attached to the parent shard of the same index, and a row copied
    // into the parent shard is routed by the worker into the partition shard.
    let parents = fixture.shards("events").unwrap();
    let parts = fixture.shards("events_low").unwrap();
    for (p, q) in parents.iter().zip(&parts) {
        assert_eq!((p.range, &p.groups), (q.range, &q.groups));
        let node = fixture.node_of_group(p.groups[0]).unwrap();
        let parent: String = node
            .query_scalar(&format!(
                "SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = '{}'::regclass",
                q.shard_table
            ))
            .unwrap();
        assert_eq!(parent, p.shard_table.replace('"', ""));
    }
    let n = fixture
        .insert_routed(
            "events",
            "SELECT g::bigint, g % 10, 'happy'::mood FROM generate_series(1, 200) g",
        )
        .unwrap();
    assert_eq!(n, 200);
    assert_eq!(fixture.count("events_low").unwrap(), 200);

    // Identity, generated and serial columns work in shard tables too.
    let inv = &fixture.shards("payments").unwrap()[0];
    let node = fixture.node_of_group(inv.groups[0]).unwrap();
    node.execute(&format!("INSERT INTO {} DEFAULT VALUES", inv.shard_table))
        .unwrap();
    assert_eq!(fixture.count("payments").unwrap(), 1);
    let audit = &fixture.shards("audit").unwrap()[0];
    assert_eq!(
        audit.shard_table,
        format!("\"{}\".\"audit_{}\"", fixture.schema(), audit.shardid)
    );
}

#[test]
fn split_shard_moves_rows_into_two_new_shards_of_every_colocated_table() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let fixture = cluster.create(&sample_spec()).unwrap();
    fixture
        .insert_routed(
            "users",
            "SELECT g::bigint, 'u' || g FROM generate_series(1, 3000) g",
        )
        .unwrap();
    fixture
        .insert_routed(
            "orders",
            "SELECT g::bigint % 3000 + 1, g::bigint, g * 1.5 FROM generate_series(1, 6000) g",
        )
        .unwrap();
    let users_before = fixture.rows("users").unwrap();
    let orders_before = fixture.rows("orders").unwrap();

    let shards = fixture.shards("users").unwrap();
    let target = &shards[5];
    let (min, max) = target.range.unwrap();
    let point = min + (max - min) / 3;
    let (low, high) = fixture.split_shard("users", target.shardid, point).unwrap();
    let next = if cluster.is_real() { low } else { 102073 };
    assert_eq!((low, high), (next, next + 1));

    let after = fixture.shards("users").unwrap();
    assert_eq!(after.len(), 33);
    let lo = after.iter().find(|s| s.shardid == low).unwrap();
    let hi = after.iter().find(|s| s.shardid == high).unwrap();
    assert_eq!(lo.range, Some((min, point)));
    assert_eq!(hi.range, Some((point + 1, max)));
    assert_eq!(lo.groups, target.groups);
    assert!(after.iter().all(|s| s.shardid != target.shardid));
    // Ranges still tile the hash space.
    let mut ranges: Vec<(i32, i32)> = after.iter().map(|s| s.range.unwrap()).collect();
    ranges.sort();
    assert_eq!(ranges[0].0, i32::MIN);
    assert_eq!(ranges.last().unwrap().1, i32::MAX);
    assert!(
        ranges
            .windows(2)
            .all(|w| i64::from(w[0].1) + 1 == i64::from(w[1].0))
    );

    // The colocated orders shard was split the same way, with its own new ids.
    let orders = fixture.shards("orders").unwrap();
    assert_eq!(orders.len(), 33);
    let orders_children: Vec<_> = orders
        .iter()
        .filter(|s| s.range == lo.range || s.range == hi.range)
        .collect();
    assert_eq!(orders_children.len(), 2);
    if !cluster.is_real() {
        assert_eq!(
            orders_children
                .iter()
                .map(|s| s.shardid)
                .collect::<Vec<_>>(),
            vec![102075, 102076]
        );
    }

    // Every row is still there exactly once, and each child holds only its own hashes.
    assert_eq!(fixture.rows("users").unwrap(), users_before);
    assert_eq!(fixture.rows("orders").unwrap(), orders_before);
    let worker = fixture.node_of_group(lo.groups[0]).unwrap();
    for (shard, (a, b)) in [(lo, lo.range.unwrap()), (hi, hi.range.unwrap())] {
        let total: i64 = worker
            .query_scalar(&format!("SELECT count(*) FROM {}", shard.shard_table))
            .unwrap();
        let outside: i64 = worker
            .query_scalar(&format!(
                "SELECT count(*) FROM {} WHERE worker_hash(user_id) NOT BETWEEN {a} AND {b}",
                shard.shard_table
            ))
            .unwrap();
        assert!(total > 0);
        assert_eq!(outside, 0);
    }
    let old_gone: bool = worker
        .query_scalar(&format!(
            "SELECT to_regclass('{}') IS NULL",
            target.shard_table
        ))
        .unwrap();
    assert!(old_gone);
    // Every node's catalog copy agrees, and routing follows the new ranges.
    for node in fixture.nodes() {
        let n: i64 = node
            .query_scalar("SELECT count(*) FROM pg_dist_shard")
            .unwrap();
        assert_eq!(n, 67, "node {}", node.port);
    }
    let value_in_low: i64 = worker
        .query_scalar(&format!("SELECT user_id FROM {} LIMIT 1", lo.shard_table))
        .unwrap();
    assert_eq!(
        fixture
            .shard_id_for("users", &format!("{value_in_low}::bigint"))
            .unwrap(),
        low
    );
    assert!(
        fixture.split_shard("users", low, max).is_err(),
        "split point outside the shard"
    );
    assert!(fixture.split_shard("products", 102072, 0).is_err());
}

#[test]
fn many_shards_with_63_byte_names_coexist_on_one_worker() {
    // 56 bytes + "_1020xx" = 63 bytes: the shard tables' array types ("_" + name, clipped to 63
    // bytes) of sibling shards on the same worker collide unless PostgreSQL may pick free names.
    let name = "t23456789_123456789_123456789_123456789_123456789_123456";
    assert_eq!(name.len(), 56);
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let spec = ClusterSpec::new().distributed(
        name,
        &format!("CREATE TABLE {name} (id int PRIMARY KEY)"),
        "id",
        16,
    );
    let fixture = cluster.create(&spec).unwrap();
    let shards = fixture.shards(name).unwrap();
    assert_eq!(shards.len(), 16);
    for s in &shards {
        assert!(
            s.shard_table.ends_with(&format!("_{}\"", s.shardid)),
            "{}",
            s.shard_table
        );
    }
    fixture
        .insert_routed(name, "SELECT g FROM generate_series(1, 200) g")
        .unwrap();
    assert_eq!(fixture.count(name).unwrap(), 200);
}

#[test]
fn fake_get_shard_id_keeps_bpchar_values_whole() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let spec = ClusterSpec::new().distributed(
        "codes",
        "CREATE TABLE codes (code char(8) PRIMARY KEY)",
        "code",
        8,
    );
    let fixture = cluster.create(&spec).unwrap();
    let c = fixture.coordinator();
    let table = fixture.qualified("codes").unwrap();
    let via_function: i64 = c
        .query_scalar(&format!(
            "SELECT get_shard_id_for_distribution_column('{table}', 'abcdef'::bpchar)"
        ))
        .unwrap();
    let via_hash: i64 = c
        .query_scalar(&format!(
            "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = '{table}'::regclass \
             AND worker_hash('abcdef'::bpchar) BETWEEN shardminvalue::int AND shardmaxvalue::int"
        ))
        .unwrap();
    assert_eq!(via_function, via_hash);
}
