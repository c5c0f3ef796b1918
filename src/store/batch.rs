//! Multi-row statements: many rows in one `INSERT`, so a batch costs a few statements (and a
//! few hand-offs to the database) instead of one per row. Rows go in chunks of a few fixed
//! sizes, so each table has a handful of statement texts for the statement cache to keep,
//! and no chunk comes near a bind-parameter limit (SQLite 32,766, PostgreSQL 65,535).
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// Chunk sizes, largest first: `n` rows are written as greedy chunks of these.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The chunk lengths `n` rows are written in.
pub(super) fn chunk_lengths(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// Placeholders `$from, $from+1, …` for `n` binds.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `($1, $2, …), ($k, …)` for `rows` rows of `cols` binds each.
pub(super) fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * cols + 1, cols))).collect::<Vec<_>>().join(", ")
}

/// `{head}{value rows}{tail}` for every chunk of `rows`, each row's `cols` values bound by
/// `bind`, in the transaction `tx`.
pub(super) async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'_, Any>,
    head: &str,
    tail: &str,
    cols: usize,
    rows: &[T],
    bind: impl for<'a> Fn(Query<'a, Any, AnyArguments<'a>>, &'a T) -> Query<'a, Any, AnyArguments<'a>>,
) -> sqlx::Result<()> {
    let mut rest = rows;
    for len in chunk_lengths(rows.len()) {
        let (chunk, after) = rest.split_at(len);
        rest = after;
        let sql = format!("{head}{}{tail}", value_rows(len, cols));
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = bind(q, row);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_into_the_fixed_chunk_sizes() {
        assert_eq!(chunk_lengths(0), Vec::<usize>::new());
        assert_eq!(chunk_lengths(1), vec![1]);
        assert_eq!(chunk_lengths(70), vec![64, 4, 1, 1]);
        assert_eq!(chunk_lengths(150).iter().sum::<usize>(), 150);
        assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
