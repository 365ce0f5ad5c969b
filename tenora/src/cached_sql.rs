//! [`CachedSql`]: a raw SQL statement with binds that the connection may prepare once and
//! reuse, for the hot statements of the sign-up and lookup paths.
//!
//! Diesel never caches `sql_query` statements (their text may vary without bound), so each
//! one is prepared anew: on PostgreSQL a prepare round trip before every execution. The
//! registry's and the spare table's hot statements have one text per deployment (the table
//! name is the only variable part), so they are safe to cache by text; this type is
//! `sql_query` minus the "do not cache" mark. Use it only for statements whose text comes
//! from a small fixed set: every distinct text stays prepared on the connection.
//!
//! Placeholders are written as the backend writes them (`$1`… or `?`) and must not occur
//! elsewhere in the text; `$n` may appear in any order (each takes the n-th bind), `?` take
//! the binds in order.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement with binds, cacheable by its text.
pub(crate) struct CachedSql<'a, DB> {
    sql: String,
    binds: Vec<Box<dyn Arg<DB> + Send + 'a>>,
}

/// Starts a cacheable statement (see the module docs for which statements qualify).
pub(crate) fn cached_sql<'a, DB>(sql: impl Into<String>) -> CachedSql<'a, DB> {
    CachedSql {
        sql: sql.into(),
        binds: Vec::new(),
    }
}

impl<'a, DB: Backend> CachedSql<'a, DB> {
    /// Adds the next bind, of SQL type `ST`.
    pub(crate) fn bind<ST, V>(mut self, value: V) -> Self
    where
        DB: HasSqlType<ST>,
        V: ToSql<ST, DB> + Send + 'a,
        ST: 'a,
    {
        self.binds.push(Box::new(Bound {
            value,
            sql_type: PhantomData::<fn() -> ST>,
        }));
        self
    }
}

/// One bind value, pushed with its SQL type.
trait Arg<DB: Backend> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

struct Bound<ST, V> {
    value: V,
    sql_type: PhantomData<fn() -> ST>,
}

impl<DB, ST, V> Arg<DB> for Bound<ST, V>
where
    DB: Backend + HasSqlType<ST>,
    V: ToSql<ST, DB>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl<DB: Backend> QueryFragment<DB> for CachedSql<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let missing = |n: usize| {
            diesel::result::Error::QueryBuilderError(
                format!("statement has no bind for placeholder {n}").into(),
            )
        };
        let bytes = self.sql.as_bytes();
        let (mut start, mut i, mut next) = (0, 0, 0);
        while i < bytes.len() {
            let (index, end) = match bytes[i] {
                b'?' => {
                    next += 1;
                    (next - 1, i + 1)
                }
                b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    let digits = bytes[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let n: usize = self.sql[i + 1..i + 1 + digits]
                        .parse()
                        .map_err(|_| missing(0))?;
                    (n.checked_sub(1).ok_or_else(|| missing(n))?, i + 1 + digits)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.push_sql(&self.sql[start..i]);
            self.binds
                .get(index)
                .ok_or_else(|| missing(index + 1))?
                .push(&mut out)?;
            start = end;
            i = end;
        }
        out.push_sql(&self.sql[start..]);
        Ok(())
    }
}

impl<DB> QueryId for CachedSql<'_, DB> {
    type QueryId = ();
    // No static id: the connection's statement cache keys it by its text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for CachedSql<'_, DB> {
    type SqlType = Untyped;
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::cached_sql;
    use diesel::sql_types::{Integer, Text};
    use diesel::sqlite::Sqlite;

    #[test]
    fn question_marks_take_the_binds_in_order() {
        let query = cached_sql::<Sqlite>("SELECT ? AS a, ? AS b WHERE 'x' = 'x'")
            .bind::<Integer, _>(1)
            .bind::<Text, _>("two");
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        assert!(
            sql.starts_with("SELECT ? AS a, ? AS b WHERE 'x' = 'x'"),
            "{sql}"
        );
        assert!(sql.contains("binds: [1, \"two\"]"), "{sql}");
        // Too few binds: an error, not a panic.
        let short = cached_sql::<Sqlite>("SELECT ?, ?").bind::<Integer, _>(1);
        let error = diesel::query_builder::QueryFragment::<Sqlite>::to_sql(
            &short,
            &mut <Sqlite as diesel::backend::Backend>::QueryBuilder::default(),
            &Sqlite,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("no bind for placeholder 2"),
            "{error}"
        );
    }
}

#[cfg(all(test, feature = "postgres"))]
mod pg_tests {
    use super::cached_sql;
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    /// How many statements with `text` this session holds prepared.
    async fn prepared(conn: &mut AsyncPgConnection, text: &str) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
            .bind::<Text, _>(text)
            .get_result::<Count>(conn)
            .await
            .unwrap()
            .n
    }

    #[test]
    fn numbered_placeholders_take_their_own_bind_in_any_order() {
        let query = cached_sql::<diesel::pg::Pg>("SELECT $2 AS b, $1 AS a, $2 AS again")
            .bind::<Text, _>("first")
            .bind::<Text, _>("second");
        let sql = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
        // Renumbered in order of appearance, each with the bind its number named.
        assert!(
            sql.starts_with("SELECT $1 AS b, $2 AS a, $3 AS again"),
            "{sql}"
        );
        assert!(
            sql.contains("binds: [\"second\", \"first\", \"second\"]"),
            "{sql}"
        );
    }

    #[tokio::test]
    async fn postgres_prepares_a_cached_statement_once_per_connection() {
        let Ok(url) = std::env::var("TENORA_TEST_PG_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but TENORA_TEST_PG_URL is not"
            );
            eprintln!("SKIPPED: TENORA_TEST_PG_URL is not set");
            return;
        };
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        let text = "SELECT $1::text || 'x' AS n_text";
        #[derive(diesel::QueryableByName)]
        struct Out {
            #[diesel(sql_type = Text)]
            n_text: String,
        }
        for value in ["a", "b", "c"] {
            let out = cached_sql(text)
                .bind::<Text, _>(value)
                .get_result::<Out>(&mut conn)
                .await
                .unwrap();
            assert_eq!(out.n_text, format!("{value}x"));
        }
        assert_eq!(prepared(&mut conn, text).await, 1, "prepared once, reused");
        // What diesel does with `sql_query`: prepared for each run, never kept.
        let plain = "SELECT $1::text || 'y' AS n_text";
        for value in ["a", "b"] {
            diesel::sql_query(plain)
                .bind::<Text, _>(value)
                .get_result::<Out>(&mut conn)
                .await
                .unwrap();
        }
        assert_eq!(prepared(&mut conn, plain).await, 0);
    }
}
