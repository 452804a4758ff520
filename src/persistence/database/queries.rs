//! The participation queries, written once in the [`backend!`] macro and expanded for each
//! backend with its connection, timestamp type and write-transaction method.

/// Rows per multi-row statement (well below both backends' bind-parameter limits).
const ROWS_PER_STATEMENT: usize = 1000;

/// The queries, written once and expanded per backend. `$ts` is the backend's SQL type for a UTC
/// timestamp; `$leave_sql` builds the multi-row "only left" update for `n` rows; `$transaction`
/// is the connection method that opens a write transaction (SQLite takes the write lock at once).
macro_rules! backend {
    ($module:ident, $conn:ty, $ts:ident, $transaction:ident, $leave_sql:expr) => {
        pub(super) mod $module {
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel::sql_types::{$ts, Nullable, Text};
            use diesel::upsert::excluded;

            use crate::persistence::batch::Batch;
            use super::super::{Participation, SessionRecord};
            use super::ROWS_PER_STATEMENT;

            pub mod schema {
                diesel::table! {
                    sessions (id) {
                        id -> Text,
                        created_at -> $ts,
                        last_active_at -> $ts,
                        ended_at -> Nullable<$ts>,
                    }
                }

                diesel::table! {
                    session_participants (session_id, user_id) {
                        session_id -> Text,
                        user_id -> Text,
                        display_name -> Text,
                        first_joined_at -> $ts,
                        last_joined_at -> $ts,
                        last_left_at -> Nullable<$ts>,
                        join_count -> BigInt,
                    }
                }

                diesel::joinable!(session_participants -> sessions (session_id));
                diesel::allow_tables_to_appear_in_same_query!(sessions, session_participants);
            }

            use schema::{session_participants as sp, sessions as s};

            diesel::define_sql_function! {
                fn coalesce(x: Nullable<$ts>, y: Nullable<$ts>) -> Nullable<$ts>;
            }

            pub fn write(conn: &mut $conn, batch: &Batch) -> QueryResult<()> {
                // Tuples of `column.eq(value)` (not a derived `Insertable`): SQLite can then put
                // every row in one VALUES list, since no value may fall back to DEFAULT.
                let sessions: Vec<_> = batch
                    .sessions
                    .iter()
                    .map(|(id, op)| {
                        (
                            s::id.eq(id.as_str()),
                            s::created_at.eq(op.first_active),
                            s::last_active_at.eq(op.last_active),
                            s::ended_at.eq(op.ended_at),
                        )
                    })
                    .collect();
                let mut joined = Vec::new();
                let mut left_only = Vec::new();
                for ((session, user), op) in &batch.participants {
                    match (op.first_join, op.last_join) {
                        (Some(first), Some(last)) if op.has_join() => joined.push((
                            sp::session_id.eq(session.as_str()),
                            sp::user_id.eq(user.as_str()),
                            sp::display_name.eq(op.display_name.as_deref().unwrap_or(user)),
                            sp::first_joined_at.eq(first),
                            sp::last_joined_at.eq(last),
                            sp::last_left_at.eq(op.last_left),
                            sp::join_count.eq(op.joins),
                        )),
                        _ => {
                            if let Some(at) = op.last_left {
                                left_only.push((session.as_str(), user.as_str(), at));
                            }
                        }
                    }
                }
                conn.$transaction(|conn| {
                    for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
                        diesel::insert_into(s::table)
                            .values(chunk.to_vec())
                            .on_conflict(s::id)
                            .do_update()
                            .set((
                                s::last_active_at.eq(excluded(s::last_active_at)),
                                s::ended_at.eq(coalesce(excluded(s::ended_at), s::ended_at)),
                            ))
                            .execute(conn)?;
                    }
                    for chunk in joined.chunks(ROWS_PER_STATEMENT) {
                        diesel::insert_into(sp::table)
                            .values(chunk.to_vec())
                            .on_conflict((sp::session_id, sp::user_id))
                            .do_update()
                            .set((
                                sp::display_name.eq(excluded(sp::display_name)),
                                sp::last_joined_at.eq(excluded(sp::last_joined_at)),
                                sp::last_left_at
                                    .eq(coalesce(excluded(sp::last_left_at), sp::last_left_at)),
                                sp::join_count.eq(sp::join_count + excluded(sp::join_count)),
                            ))
                            .execute(conn)?;
                    }
                    for chunk in left_only.chunks(ROWS_PER_STATEMENT) {
                        let sql: String = $leave_sql(chunk.len());
                        let mut query = diesel::sql_query(sql).into_boxed();
                        for (session, user, at) in chunk {
                            query = query
                                .bind::<Text, _>(*session)
                                .bind::<Text, _>(*user)
                                .bind::<$ts, _>(*at);
                        }
                        query.execute(conn)?;
                    }
                    Ok(())
                })
            }

            type Row = (
                String,
                String,
                DateTime<Utc>,
                DateTime<Utc>,
                Option<DateTime<Utc>>,
                i64,
                Option<DateTime<Utc>>,
            );

            fn participation(row: Row) -> Participation {
                let (session, display_name, first, last, left, join_count, ended_at) = row;
                Participation {
                    session,
                    display_name,
                    first_joined_at: first,
                    last_joined_at: last,
                    last_left_at: left,
                    join_count,
                    ended_at,
                }
            }

            pub fn participations(
                conn: &mut $conn,
                user: &str,
                scope: Option<&[String]>,
                limit: i64,
            ) -> QueryResult<Vec<Participation>> {
                let mut query = sp::table
                    .inner_join(s::table)
                    .filter(sp::user_id.eq(user))
                    .into_boxed();
                if let Some(scope) = scope {
                    query = query.filter(sp::session_id.eq_any(scope));
                }
                let rows: Vec<Row> = query
                    .order((sp::last_joined_at.desc(), sp::session_id.asc()))
                    .limit(limit)
                    .select((
                        sp::session_id,
                        sp::display_name,
                        sp::first_joined_at,
                        sp::last_joined_at,
                        sp::last_left_at,
                        sp::join_count,
                        s::ended_at,
                    ))
                    .load(conn)?;
                Ok(rows.into_iter().map(participation).collect())
            }

            pub fn participants(
                conn: &mut $conn,
                session: &str,
            ) -> QueryResult<Vec<(String, Participation)>> {
                let rows: Vec<(String, Row)> = sp::table
                    .inner_join(s::table)
                    .filter(sp::session_id.eq(session))
                    .order(sp::user_id.asc())
                    .select((
                        sp::user_id,
                        (
                            sp::session_id,
                            sp::display_name,
                            sp::first_joined_at,
                            sp::last_joined_at,
                            sp::last_left_at,
                            sp::join_count,
                            s::ended_at,
                        ),
                    ))
                    .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(user, row)| (user, participation(row)))
                    .collect())
            }

            pub fn session(conn: &mut $conn, id: &str) -> QueryResult<Option<SessionRecord>> {
                let row: Option<(String, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)> =
                    s::table
                        .filter(s::id.eq(id))
                        .select((s::id, s::created_at, s::last_active_at, s::ended_at))
                        .first(conn)
                        .optional()?;
                Ok(row.map(|(id, created_at, last_active_at, ended_at)| SessionRecord {
                    id,
                    created_at,
                    last_active_at,
                    ended_at,
                }))
            }

            pub fn count_participants(conn: &mut $conn) -> QueryResult<i64> {
                sp::table.count().get_result(conn)
            }
        }
    };
}

backend!(pg, PgConnection, Timestamptz, transaction, |n: usize| {
    let values: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "(${}::text, ${}::text, ${}::timestamptz)",
                3 * i + 1,
                3 * i + 2,
                3 * i + 3
            )
        })
        .collect();
    format!(
        "UPDATE session_participants AS p SET last_left_at = v.t \
         FROM (VALUES {}) AS v(s, u, t) \
         WHERE p.session_id = v.s AND p.user_id = v.u",
        values.join(", ")
    )
});

backend!(
    sqlite,
    SqliteConnection,
    TimestamptzSqlite,
    immediate_transaction,
    |n: usize| {
        let values = vec!["(?, ?, ?)"; n].join(", ");
        format!(
            "UPDATE session_participants SET last_left_at = v.column3 \
             FROM (VALUES {values}) AS v \
             WHERE session_participants.session_id = v.column1 \
             AND session_participants.user_id = v.column2"
        )
    }
);
