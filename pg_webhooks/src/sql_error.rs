//! The boundary where Rust errors become PostgreSQL errors with a SQLSTATE.

use pgrx::{ereport, PgLogLevel, PgSqlErrorCode};

/// An error that knows its SQLSTATE.
pub trait SqlError: std::fmt::Display {
    fn sqlstate(&self) -> PgSqlErrorCode;
}

/// Raise the error in PostgreSQL (this never returns).
pub fn raise<E: SqlError>(error: E) -> ! {
    ereport!(
        PgLogLevel::ERROR,
        error.sqlstate(),
        format!("pg_webhooks: {error}")
    );
    unreachable!("ereport(ERROR) does not return")
}
