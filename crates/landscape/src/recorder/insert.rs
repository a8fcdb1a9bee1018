//! The multi-row `INSERT` of the write buffer's records, written by hand
//! for the flush thread, which is a run's critical path.
//!
//! Each record type lists its table's columns once (`buffer.rs`'s
//! `record!`: [`Record::COLUMNS`] and [`Record::bind_values`] come from the
//! same list); one flat walk makes the statement's SQL (once per table and
//! size, then cached) and its binds. Diesel's own
//! batch insert walked nested tuples of column values, asking each whether
//! it was a no-op, and spent ≈ 19% of the flush thread's time at 100k rows
//! collecting binds; this walk spends ≈ 11% (mostly diesel's per-value bind
//! collection, which every statement needs).
//!
//! Records are inserted in statements of 64 rows, then the rest in
//! statements of 32, 16, 8, 4, 2 and 1 rows: every statement of a fixed
//! size, so none is prepared anew per flush. On SQLite the statement is
//! `INSERT OR IGNORE` (a refused row is skipped, never aborted half-way,
//! so SQLite keeps no statement journal); the caller compares the count.

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl};

use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};

/// A record of one table, as the columns it writes.
pub(crate) trait Record: Send + 'static {
    const TABLE: &'static str;
    /// The columns written, in the order [`Record::bind_values`] hands them.
    const COLUMNS: &'static [&'static str];

    /// Hands the value of each of [`Record::COLUMNS`] to `out`, in order.
    fn bind_values<'b, B: Binds<'b>>(&'b self, out: &mut B) -> QueryResult<()>;
}

/// What a record's values are handed to: each as the SQL type `T`.
pub(crate) trait Binds<'b> {
    fn bind<T, U>(&mut self, value: &'b U) -> QueryResult<()>
    where
        Sqlite: HasSqlType<T>,
        Pg: HasSqlType<T>,
        U: ToSql<T, Sqlite> + ToSql<T, Pg> + ?Sized;
}

/// Inserts every record; the rows the database took.
pub(crate) fn insert_all<R: Record>(conn: &mut DbConnection, records: &[R]) -> Result<usize> {
    let mut rest = records;
    let mut inserted = insert_chunks::<R, 64>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 32>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 16>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 8>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 4>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 2>(conn, &mut rest)?;
    inserted += insert_chunks::<R, 1>(conn, &mut rest)?;
    Ok(inserted)
}

/// Inserts the records at the front of `rest` that fill whole statements of
/// `N` rows, and moves `rest` past them.
fn insert_chunks<R: Record, const N: usize>(conn: &mut DbConnection, rest: &mut &[R]) -> Result<usize> {
    let mut inserted = 0;
    while rest.len() >= N {
        let (chunk, tail) = rest.split_at(N);
        let records: &[R; N] = chunk.try_into().map_err(|_| LandscapeError::integrity("an insert chunk of the wrong size"))?;
        let insert = Insert { records };
        inserted += match conn {
            DbConnection::Sqlite(c) => insert.execute(c),
            DbConnection::Postgresql(c) => insert.execute(c),
        }?;
        *rest = tail;
    }
    Ok(inserted)
}

/// One statement: `N` records of one table.
struct Insert<'a, R, const N: usize> {
    records: &'a [R; N],
}

/// The statement cache's key: one prepared statement per table and size.
struct InsertId<R, const N: usize>(PhantomData<R>);

impl<R: Record, const N: usize> QueryId for Insert<'_, R, N> {
    type QueryId = InsertId<R, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<R, const N: usize, Conn> RunQueryDsl<Conn> for Insert<'_, R, N> {}

impl<R: Record, const N: usize> QueryFragment<Sqlite> for Insert<'_, R, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("INSERT OR IGNORE INTO ");
        write_sql(self.records, &mut out)
    }
}

impl<R: Record, const N: usize> QueryFragment<Pg> for Insert<'_, R, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        write_sql(self.records, &mut out)
    }
}

/// `table (columns) VALUES (…), (…)`: the pass gets a placeholder or a
/// bind for each value, whichever it collects.
fn write_sql<'b, R: Record, DB>(records: &'b [R], out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
where
    DB: Backend,
    for<'p, 'a> Values<'p, 'a, 'b, DB>: Binds<'b>,
{
    out.push_identifier(R::TABLE)?;
    for (index, column) in R::COLUMNS.iter().enumerate() {
        out.push_sql(if index == 0 { " (" } else { ", " });
        out.push_identifier(column)?;
    }
    out.push_sql(") VALUES ");
    for (index, record) in records.iter().enumerate() {
        out.push_sql(if index == 0 { "(" } else { ", (" });
        record.bind_values(&mut Values { out: &mut *out, first: true })?;
        out.push_sql(")");
    }
    Ok(())
}

/// Writes one record's placeholders (and hands its binds to the pass).
struct Values<'p, 'a, 'b, DB: Backend> {
    out: &'p mut AstPass<'a, 'b, DB>,
    first: bool,
}

macro_rules! values_for {
    ($backend:ty) => {
        impl<'b> Binds<'b> for Values<'_, '_, 'b, $backend> {
            fn bind<T, U>(&mut self, value: &'b U) -> QueryResult<()>
            where
                Sqlite: HasSqlType<T>,
                Pg: HasSqlType<T>,
                U: ToSql<T, Sqlite> + ToSql<T, Pg> + ?Sized,
            {
                if !std::mem::take(&mut self.first) {
                    self.out.push_sql(", ");
                }
                self.out.push_bind_param::<T, U>(value)
            }
        }
    };
}
values_for!(Sqlite);
values_for!(Pg);
