//! Hand-written statements for the few updates that must be one atomic
//! statement (counters, rotations). Placeholders are `$1…$n`, numbered in
//! order of first use, which SQLite and PostgreSQL both read the same way.

use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};

use super::StoreResult;

pub async fn query_one<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> StoreResult<Option<QueryResult>> {
    let statement = Statement::from_sql_and_values(conn.get_database_backend(), sql, values);
    Ok(conn.query_one_raw(statement).await?)
}

/// Rows a batch statement touches at most: far below the bind parameter
/// limits of both engines (SQLite 32,766, PostgreSQL 65,535) even at a dozen
/// columns a row.
pub const BATCH_ROWS: usize = 500;

/// `count` placeholders numbered from `first`: `$3, $4, $5`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

pub async fn query_all<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> StoreResult<Vec<QueryResult>> {
    let statement = Statement::from_sql_and_values(conn.get_database_backend(), sql, values);
    Ok(conn.query_all_raw(statement).await?)
}

/// Runs a statement and returns the number of rows it changed.
pub async fn execute<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> StoreResult<u64> {
    let statement = Statement::from_sql_and_values(conn.get_database_backend(), sql, values);
    Ok(conn.execute_raw(statement).await?.rows_affected())
}

/// Writes that return nothing, run in the order pushed. On SQLite they travel
/// to the connection's thread as one string, in one hand-off instead of one
/// each: every hand-off costs thread switches (docs/PERFORMANCE.md, "Third
/// pass"). sqlx runs such a string
/// statement by statement and reads `$n` across all of it, so each
/// statement's placeholders are moved past the values of those before it. On
/// PostgreSQL each is its own statement, as before. Statements are written
/// with `$1…$n`, each numbering only its own values, and hold no `$` in a
/// literal or comment. Run them in a transaction where they must all happen
/// or none: on SQLite the statements before a failing one have run.
#[derive(Debug, Default)]
#[must_use = "nothing is written until the writes are run"]
pub struct Writes {
    statements: Vec<(String, Vec<Value>)>,
}

impl Writes {
    pub fn push(&mut self, sql: impl Into<String>, values: Vec<Value>) {
        let sql = sql.into();
        // SQLite binds NULL to a placeholder past the values, where
        // PostgreSQL refuses the statement: keep both the same.
        debug_assert!(highest_placeholder(&sql) <= values.len(), "{sql} has more placeholders than values");
        self.statements.push((sql, values));
    }

    pub async fn run<C: ConnectionTrait>(self, conn: &C) -> StoreResult<()> {
        let backend = conn.get_database_backend();
        if backend != sea_orm::DbBackend::Sqlite || self.statements.len() < 2 {
            for (sql, values) in self.statements {
                conn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
            }
            return Ok(());
        }
        let mut joined = Vec::with_capacity(self.statements.len());
        let mut all_values = Vec::new();
        for (sql, values) in self.statements {
            joined.push(renumbered(&sql, all_values.len()));
            all_values.extend(values);
        }
        let joined = joined.join(";\n");
        conn.execute_raw(Statement::from_sql_and_values(backend, joined, all_values)).await?;
        Ok(())
    }
}

/// `sql` with every placeholder `$n` made `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            out.push_str(&(n + offset).to_string());
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn highest_placeholder(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|after| after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// `INSERT INTO table (a, b) VALUES ($1, $2)`.
pub fn insert_statement(table: &str, columns: &[&str]) -> String {
    format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), placeholders(1, columns.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::in_memory as store;

    #[test]
    fn placeholders_move_past_the_values_before() {
        assert_eq!(renumbered("a = $1 AND b IN ($2, $10)", 3), "a = $4 AND b IN ($5, $13)");
        assert_eq!(renumbered("no placeholders, $ alone", 7), "no placeholders, $ alone");
        assert_eq!(insert_statement("t", &["a", "b"]), "INSERT INTO t (a, b) VALUES ($1, $2)");
        assert_eq!(highest_placeholder("a = $2 AND b IN ($10, $3) AND c = '$'"), 10);
        assert_eq!(highest_placeholder("SELECT 1"), 0);
    }

    #[tokio::test]
    async fn writes_run_in_order_each_with_its_own_values() {
        let store = store().await;
        let conn = store.connection();
        conn.execute_unprepared("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)").await.unwrap();
        let mut writes = Writes::default();
        writes.push(insert_statement("t", &["k", "n"]), vec!["a".into(), 1.into()]);
        writes.push(insert_statement("t", &["k", "n"]), vec!["b".into(), 2.into()]);
        writes.push("UPDATE t SET n = n + $1 WHERE k = $2", vec![10.into(), "a".into()]);
        writes.run(conn).await.unwrap();
        let rows = query_all(conn, "SELECT k, n FROM t ORDER BY k", []).await.unwrap();
        let rows: Vec<(String, i64)> =
            rows.iter().map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap())).collect();
        assert_eq!(rows, [("a".to_owned(), 11), ("b".to_owned(), 2)]);

        let mut failing = Writes::default();
        failing.push(insert_statement("t", &["k", "n"]), vec!["c".into(), 3.into()]);
        failing.push(insert_statement("t", &["k", "n"]), vec!["a".into(), 4.into()]);
        assert!(failing.run(conn).await.is_err(), "a duplicate key fails the whole run");
        Writes::default().run(conn).await.unwrap();
    }
}
