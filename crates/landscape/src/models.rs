//! Database row shapes, one per table, as diesel reads them. The loaders in
//! `loaders.rs` turn these into contract records, strictly.

#![allow(clippy::struct_excessive_bools)]

use chrono::format::{Fixed, Item, Numeric, Pad, Parsed};
use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;
use diesel::{Queryable, Selectable};

use crate::schema::{
    artifacts, batch_members, batches, calls, checkpoints, edges, node_states, nodes, operations, routing_events, rows, runs,
    secret_resolutions, token_outcomes, token_parents, tokens, transform_errors, validation_errors,
};

/// A timestamp column as read and as the write buffer writes it. On SQLite
/// the recorder writes one text form (`YYYY-MM-DD HH:MM:SS.ffffff`, diesel's
/// own); it is written by [`recorded_text`] and parsed with pre-built
/// `chrono` items instead of diesel's format strings, which `chrono` parses
/// again for every value (a few percent of an export, ≈ 6% of the flush
/// thread at 1M gate rows). Any other form falls back to diesel's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow, diesel::expression::AsExpression)]
#[diesel(sql_type = Timestamp)]
pub(crate) struct DbTime(pub(crate) NaiveDateTime);

/// `time` as diesel writes a SQLite timestamp (`%Y-%m-%d %H:%M:%S%.f`),
/// digit by digit; chrono's formatter for what that cannot write (years
/// outside 0–9999, leap seconds).
pub(crate) fn recorded_text(time: &NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (time.year(), time.nanosecond());
    let year = match u32::try_from(year) {
        Ok(year) if year <= 9999 && nanos < 1_000_000_000 => year,
        Ok(_) | Err(_) => return time.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
    };
    let mut text = String::with_capacity(29);
    push_digits(&mut text, year, 4);
    for (separator, value) in
        [('-', time.month()), ('-', time.day()), (' ', time.hour()), (':', time.minute()), (':', time.second())]
    {
        text.push(separator);
        push_digits(&mut text, value, 2);
    }
    // `%.f`: nothing, or 3, 6 or 9 digits, the fewest that are exact.
    let (fraction, width) = match nanos {
        0 => return text,
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    text.push('.');
    push_digits(&mut text, fraction, width);
    text
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(text: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10_u32.pow(place) % 10;
        text.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
}

impl ToSql<Timestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(recorded_text(&self.0));
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, Pg>>::to_sql(&self.0, out)
    }
}

/// `%Y-%m-%d %H:%M:%S%.f` as parsed items.
const RECORDED_TIME: [Item<'static>; 12] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal(" "),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
    Item::Fixed(Fixed::Nanosecond),
];

impl FromSql<Timestamp, Sqlite> for DbTime {
    fn from_sql(mut value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let mut parsed = Parsed::new();
        let fast = chrono::format::parse(&mut parsed, value.read_text(), RECORDED_TIME.iter())
            .and_then(|()| parsed.to_naive_datetime_with_offset(0));
        match fast {
            Ok(time) => Ok(DbTime(time)),
            Err(_) => <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(DbTime),
        }
    }
}

/// Reading through the two-backend connection dispatches to the two above.
impl FromSql<Timestamp, Backend> for DbTime {
    fn from_sql(value: <Backend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, Timestamp>()
    }
}

/// The backend of [`crate::DbConnection`].
type Backend = <crate::DbConnection as diesel::Connection>::Backend;

impl FromSql<Timestamp, Pg> for DbTime {
    fn from_sql(value: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(DbTime)
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
    pub(crate) config_hash: String,
    pub(crate) settings_json: String,
    pub(crate) reproducibility_grade: Option<String>,
    pub(crate) canonical_version: String,
    pub(crate) source_schema_json: Option<String>,
    pub(crate) source_field_resolution_json: Option<String>,
    pub(crate) status: String,
    pub(crate) export_status: Option<String>,
    pub(crate) export_error: Option<String>,
    pub(crate) exported_at: Option<DbTime>,
    pub(crate) export_format: Option<String>,
    pub(crate) export_sink: Option<String>,
    pub(crate) schema_contract_json: Option<String>,
    pub(crate) schema_contract_hash: Option<String>,
    pub(crate) owner_host: Option<String>,
    pub(crate) owner_pid: Option<i64>,
    pub(crate) heartbeat_at: Option<DbTime>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = nodes)]
pub(crate) struct NodeRow {
    pub(crate) node_id: String,
    pub(crate) run_id: String,
    pub(crate) plugin_name: String,
    pub(crate) node_type: String,
    pub(crate) plugin_version: String,
    pub(crate) determinism: String,
    pub(crate) config_hash: String,
    pub(crate) config_json: String,
    pub(crate) schema_hash: Option<String>,
    pub(crate) sequence_in_pipeline: Option<i32>,
    pub(crate) registered_at: DbTime,
    pub(crate) schema_mode: Option<String>,
    pub(crate) schema_fields_json: Option<String>,
    pub(crate) input_contract_json: Option<String>,
    pub(crate) output_contract_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = edges)]
pub(crate) struct EdgeRow {
    pub(crate) edge_id: String,
    pub(crate) run_id: String,
    pub(crate) from_node_id: String,
    pub(crate) to_node_id: String,
    pub(crate) label: String,
    pub(crate) default_mode: String,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = rows)]
pub(crate) struct RowRow {
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) source_node_id: String,
    pub(crate) row_index: i64,
    pub(crate) source_data_hash: String,
    pub(crate) source_data_ref: Option<String>,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub(crate) struct TokenRow {
    pub(crate) token_id: String,
    pub(crate) row_id: String,
    pub(crate) run_id: String,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) branch_name: Option<String>,
    pub(crate) step_in_pipeline: Option<i32>,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = token_parents)]
pub(crate) struct TokenParentRow {
    pub(crate) token_id: String,
    pub(crate) parent_token_id: String,
    pub(crate) ordinal: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = node_states)]
pub(crate) struct NodeStateRow {
    pub(crate) state_id: String,
    pub(crate) token_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) step_index: i32,
    pub(crate) attempt: i32,
    pub(crate) status: String,
    pub(crate) input_hash: String,
    pub(crate) output_hash: Option<String>,
    pub(crate) context_before_json: Option<String>,
    pub(crate) context_after_json: Option<String>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) error_json: Option<String>,
    pub(crate) success_reason_json: Option<String>,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = operations)]
pub(crate) struct OperationRow {
    pub(crate) operation_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) operation_type: String,
    pub(crate) started_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
    pub(crate) status: String,
    pub(crate) input_data_ref: Option<String>,
    pub(crate) input_data_hash: Option<String>,
    pub(crate) output_data_ref: Option<String>,
    pub(crate) output_data_hash: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) duration_ms: Option<f64>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = calls)]
pub(crate) struct CallRow {
    pub(crate) call_id: String,
    pub(crate) state_id: Option<String>,
    pub(crate) operation_id: Option<String>,
    pub(crate) call_index: i32,
    pub(crate) call_type: String,
    pub(crate) status: String,
    pub(crate) request_hash: String,
    pub(crate) request_ref: Option<String>,
    pub(crate) response_hash: Option<String>,
    pub(crate) response_ref: Option<String>,
    pub(crate) error_json: Option<String>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) created_at: DbTime,
    pub(crate) source_call_id: Option<String>,
    pub(crate) verification_status: Option<String>,
    pub(crate) verification_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = routing_events)]
pub(crate) struct RoutingEventRow {
    pub(crate) event_id: String,
    pub(crate) state_id: String,
    pub(crate) edge_id: String,
    pub(crate) routing_group_id: String,
    pub(crate) ordinal: i32,
    pub(crate) mode: String,
    pub(crate) reason_hash: Option<String>,
    pub(crate) reason_ref: Option<String>,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = batches)]
pub(crate) struct BatchRow {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) aggregation_node_id: String,
    pub(crate) aggregation_state_id: Option<String>,
    pub(crate) trigger_reason: Option<String>,
    pub(crate) trigger_type: Option<String>,
    pub(crate) attempt: i32,
    pub(crate) status: String,
    pub(crate) created_at: DbTime,
    pub(crate) completed_at: Option<DbTime>,
    pub(crate) retry_of_batch_id: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = batch_members)]
pub(crate) struct BatchMemberRow {
    pub(crate) batch_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) ordinal: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = artifacts)]
pub(crate) struct ArtifactRow {
    pub(crate) artifact_id: String,
    pub(crate) run_id: String,
    pub(crate) produced_by_state_id: String,
    pub(crate) sink_node_id: String,
    pub(crate) artifact_type: String,
    pub(crate) path_or_uri: String,
    pub(crate) content_hash: String,
    pub(crate) size_bytes: i64,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = token_outcomes)]
pub(crate) struct TokenOutcomeRow {
    pub(crate) outcome_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) outcome: String,
    pub(crate) is_terminal: i32,
    pub(crate) recorded_at: DbTime,
    pub(crate) sink_name: Option<String>,
    pub(crate) batch_id: Option<String>,
    pub(crate) fork_group_id: Option<String>,
    pub(crate) join_group_id: Option<String>,
    pub(crate) expand_group_id: Option<String>,
    pub(crate) error_hash: Option<String>,
    pub(crate) context_json: Option<String>,
    pub(crate) expected_branches_json: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = validation_errors)]
pub(crate) struct ValidationErrorRow {
    pub(crate) error_id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: Option<String>,
    pub(crate) row_id: Option<String>,
    pub(crate) row_hash: String,
    pub(crate) row_data_json: Option<String>,
    pub(crate) error: String,
    pub(crate) schema_mode: String,
    pub(crate) destination: String,
    pub(crate) created_at: DbTime,
    pub(crate) violation_type: Option<String>,
    pub(crate) original_field_name: Option<String>,
    pub(crate) normalized_field_name: Option<String>,
    pub(crate) expected_type: Option<String>,
    pub(crate) actual_type: Option<String>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = transform_errors)]
pub(crate) struct TransformErrorRow {
    pub(crate) error_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) transform_id: String,
    pub(crate) row_hash: String,
    pub(crate) row_data_json: Option<String>,
    pub(crate) error_details_json: Option<String>,
    pub(crate) destination: String,
    pub(crate) created_at: DbTime,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = checkpoints)]
pub(crate) struct CheckpointRow {
    pub(crate) checkpoint_id: String,
    pub(crate) run_id: String,
    pub(crate) token_id: String,
    pub(crate) node_id: String,
    pub(crate) sequence_number: i64,
    pub(crate) aggregation_state_json: Option<String>,
    pub(crate) coalesce_state_json: Option<String>,
    pub(crate) created_at: DbTime,
    pub(crate) upstream_topology_hash: String,
    pub(crate) checkpoint_node_config_hash: String,
    pub(crate) format_version: i32,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = secret_resolutions)]
pub(crate) struct SecretResolutionRow {
    pub(crate) resolution_id: String,
    pub(crate) run_id: String,
    pub(crate) timestamp: f64,
    pub(crate) env_var_name: String,
    pub(crate) source: String,
    pub(crate) vault_url: Option<String>,
    pub(crate) secret_name: Option<String>,
    pub(crate) fingerprint: String,
    pub(crate) resolution_latency_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The recorder's text is diesel's, for every time (leap seconds
        /// and years past 9999 included, through the fallback).
        #[test]
        fn recorded_text_is_what_diesel_writes(
            seconds in -62_167_219_200_i64..300_000_000_000,
            nanos in prop_oneof![Just(0_u32), (0_u32..1_000).prop_map(|m| m * 1_000_000), (0_u32..1_000_000).prop_map(|u| u * 1_000), 0_u32..2_000_000_000],
        ) {
            let time = chrono::DateTime::from_timestamp(seconds, nanos).map(|t| t.naive_utc());
            prop_assume!(time.is_some());
            let time = time.expect("assumed");
            prop_assert_eq!(recorded_text(&time), time.format("%F %T%.f").to_string());
        }
    }

    #[test]
    fn a_written_time_reads_back_the_same() {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Back {
            #[diesel(sql_type = Timestamp)]
            at: DbTime,
        }
        let mut sqlite = diesel::sqlite::SqliteConnection::establish(":memory:").expect("memory");
        let time = chrono::DateTime::from_timestamp(1_796_000_000, 123_456_000).expect("a time").naive_utc();
        let back: Back =
            diesel::sql_query("SELECT ? AS at").bind::<Timestamp, _>(DbTime(time)).get_result(&mut sqlite).expect("read");
        assert_eq!(back.at, DbTime(time));
    }
}
