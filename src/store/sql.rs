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
