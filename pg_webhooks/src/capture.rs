//! The capture trigger: a tracked table's row changes become events, in the writer's transaction.
//!
//! Why Rust and not a SECURITY DEFINER PL/pgSQL function: turning a row into JSON can run code
//! that whoever owns a column's type controls (a cast from that type to json, for one). Inside a
//! SECURITY DEFINER function that code ran with the rights of the role that created the
//! extension, a superuser. Here the row images are made with the writer's own rights, and only
//! the one INSERT into the outbox runs as `webhooks_capture`, a role that may insert events and
//! read the tracking table, nothing else, and that no one can log in as or SET ROLE to. No user
//! code runs in that INSERT: it reads only jsonb values already made.
//!
//! A trigger function cannot be called outside a trigger, and the event's name and source come
//! from `webhooks.tracked`, not from trigger arguments: a row event can only come from a row
//! change of a tracked table (or of a partition of one).

use crate::sql_error::{self, SqlError};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr};

/// The role the outbox INSERT runs as (created and granted in sql/90_privileges.sql).
const CAPTURE_ROLE: &CStr = c"webhooks_capture";

// The row images, made as the writer. Everything is schema-qualified: the writer's search_path
// must not pick the functions (they would run with the writer's rights only, but could shape
// the payload).
const INSERTED: &CStr =
    c"SELECT pg_catalog.jsonb_build_object('new', pg_catalog.to_jsonb(n.*)) FROM new_rows n";
const DELETED: &CStr =
    c"SELECT pg_catalog.jsonb_build_object('old', pg_catalog.to_jsonb(o.*)) FROM old_rows o";
// Old and new images are paired by position: PostgreSQL appends a row's old and new image in
// the same step, also when the update moves the row to another partition. An update that
// changes nothing is no event. tests/regress/sql/30_capture.sql guards both.
const UPDATED: &CStr = c"SELECT pg_catalog.jsonb_build_object(
           'old', o.image, 'new', n.image,
           'changed', (SELECT pg_catalog.jsonb_agg(col.key ORDER BY col.key)
                       FROM pg_catalog.jsonb_each(n.image) col
                       WHERE (o.image OPERATOR(pg_catalog.->) col.key) IS DISTINCT FROM col.value))
    FROM (SELECT pg_catalog.to_jsonb(r.*) AS image, pg_catalog.row_number() OVER () AS pos FROM old_rows r) o
    JOIN (SELECT pg_catalog.to_jsonb(r.*) AS image, pg_catalog.row_number() OVER () AS pos FROM new_rows r) n
      ON n.pos OPERATOR(pg_catalog.=) o.pos
    WHERE o.image OPERATOR(pg_catalog.<>) n.image
    ORDER BY o.pos";

// The append, as webhooks_capture: $1 the table written, $2 the event suffix, $3 the images.
// A write to a partition is an event of the tracked partitioned table above it (a tracked table
// is never a partition itself, so it is the root of its tree). Then an idle relay is woken, as
// webhooks._wake_relays() does for emit() (sql/30_capture.sql, which says why and when); inline
// here, as calling it cost about 5% of a single-row INSERT (BENCHMARKS.md).
const APPEND: &CStr = c"WITH appended AS (
        INSERT INTO webhooks.events (event, source, origin, payload)
        SELECT t.entity OPERATOR(pg_catalog.||) $2, t.source, webhooks._origin(), image.payload
        FROM webhooks.tracked t, pg_catalog.unnest($3::pg_catalog.jsonb[]) AS image(payload)
        WHERE t.source OPERATOR(pg_catalog.=) COALESCE(pg_catalog.pg_partition_root($1), $1)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM appended
    UNION ALL
    SELECT pg_catalog.count(pg_catalog.pg_notify('webhooks_wakeup', ''))
    FROM (SELECT FROM webhooks.relays r WHERE r.idle LIMIT 1) idle_relay
    WHERE pg_catalog.current_setting('max_prepared_transactions') OPERATOR(pg_catalog.=) '0'";

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "webhooks._capture() must be a FOR EACH STATEMENT trigger (set up by webhooks.track())"
    )]
    NotStatementLevel,
    #[error("webhooks._capture() does not capture {0}")]
    UnsupportedOperation(&'static str),
    #[error("webhooks._capture() needs the transition tables webhooks.track() names (old_rows, new_rows)")]
    TransitionTables,
    #[error("the capture trigger could not read the statement's rows: {0}")]
    Trigger(#[from] pgrx::trigger_support::PgTriggerError),
    #[error("SPI call {call} failed with code {code}")]
    Spi { call: &'static str, code: i32 },
}

impl SqlError for CaptureError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            CaptureError::NotStatementLevel
            | CaptureError::UnsupportedOperation(_)
            | CaptureError::TransitionTables => PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
            CaptureError::Trigger(_) | CaptureError::Spi { .. } => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
        }
    }
}

#[pg_trigger(sql = false)]
fn capture<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    if let Err(error) = capture_statement(trigger) {
        sql_error::raise(error);
    }
    Ok(None)
}

fn capture_statement(trigger: &PgTrigger<'_>) -> Result<(), CaptureError> {
    if !matches!(trigger.level(), PgTriggerLevel::Statement) {
        return Err(CaptureError::NotStatementLevel);
    }
    let operation = match trigger.op()? {
        PgTriggerOperation::Insert => Operation::Insert,
        PgTriggerOperation::Update => Operation::Update,
        PgTriggerOperation::Delete => Operation::Delete,
        PgTriggerOperation::Truncate => return Err(CaptureError::UnsupportedOperation("TRUNCATE")),
    };
    // the statements name the transition tables; a trigger made by hand with other names (or
    // none) would let them resolve to a writer's temporary tables
    if (
        trigger.old_transition_table_name()?,
        trigger.new_transition_table_name()?,
    ) != operation.transition_tables()
    {
        return Err(CaptureError::TransitionTables);
    }
    let trigger_data = std::ptr::from_ref(trigger.trigger_data()).cast_mut();
    // SAFETY: called from a trigger, so trigger_data is valid for the whole call; every SPI
    // result is read before SPI_finish frees it, and an error anywhere ends the (sub)transaction,
    // whose abort finishes SPI and restores the user id.
    unsafe {
        let relation = (*trigger_data).tg_relation;
        let _fixed_path = FixedSearchPath::enter();
        spi_status("SPI_connect", pg_sys::SPI_connect(), pg_sys::SPI_OK_CONNECT)?;
        spi_status(
            "SPI_register_trigger_data",
            pg_sys::SPI_register_trigger_data(trigger_data),
            pg_sys::SPI_OK_TD_REGISTER,
        )?;
        let images_plan = images_plan((*relation).rd_id, (*relation).rd_att, operation)?;
        let status =
            pg_sys::SPI_execute_plan(images_plan, std::ptr::null_mut(), std::ptr::null(), true, 0);
        spi_status(
            "SPI_execute_plan (row images)",
            status,
            pg_sys::SPI_OK_SELECT,
        )?;
        let mut row_images = first_column(pg_sys::SPI_tuptable, pg_sys::SPI_processed);
        if !row_images.is_empty() {
            let array = pg_sys::construct_array(
                row_images.as_mut_ptr(),
                i32::try_from(row_images.len()).unwrap_or(i32::MAX),
                pg_sys::JSONBOID,
                -1,
                false,
                pg_sys::TYPALIGN_INT as c_char,
            );
            // a cast the row images ran may have changed search_path: fix it again
            let _append_path = FixedSearchPath::enter();
            let _capture_role = AsCaptureRole::enter();
            append((*relation).rd_id, operation.suffix(), array)?;
        }
        spi_status("SPI_finish", pg_sys::SPI_finish(), pg_sys::SPI_OK_FINISH)?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    fn images_sql(self) -> &'static CStr {
        match self {
            Operation::Insert => INSERTED,
            Operation::Update => UPDATED,
            Operation::Delete => DELETED,
        }
    }

    /// The names webhooks.track() gives the old and new transition tables.
    fn transition_tables(self) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            Operation::Insert => (None, Some("new_rows")),
            Operation::Update => (Some("old_rows"), Some("new_rows")),
            Operation::Delete => (Some("old_rows"), None),
        }
    }

    fn suffix(self) -> &'static CStr {
        match self {
            Operation::Insert => c".created",
            Operation::Update => c".updated",
            Operation::Delete => c".deleted",
        }
    }
}

/// The columns a table's row images were planned for: name, type, typmod, dropped. A plan
/// made for another shape of the table (a column added, dropped, renamed or retyped since) is
/// made again.
type Shape = Vec<(String, pg_sys::Oid, i32, bool)>;

unsafe fn shape_of(tupdesc: pg_sys::TupleDesc) -> Shape {
    let natts = usize::try_from((*tupdesc).natts).unwrap_or_default();
    (*tupdesc)
        .attrs
        .as_slice(natts)
        .iter()
        .map(|attribute| {
            let name = CStr::from_ptr(attribute.attname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            (
                name,
                attribute.atttypid,
                attribute.atttypmod,
                attribute.attisdropped,
            )
        })
        .collect()
}

// Plans are made once per backend and kept: parsing and planning both statements on every
// write cost more than the rest of the trigger (BENCHMARKS.md, capture in Rust).
thread_local! {
    static IMAGES_PLANS: RefCell<HashMap<(pg_sys::Oid, Operation), (Shape, pg_sys::SPIPlanPtr)>> =
        RefCell::new(HashMap::new());
    static APPEND_PLAN: RefCell<Option<pg_sys::SPIPlanPtr>> = const { RefCell::new(None) };
}

/// The kept plan that makes this table's row images for this operation, made again when the
/// table changed shape. The transition tables must be registered (they are parsed as names).
unsafe fn images_plan(
    relid: pg_sys::Oid,
    tupdesc: pg_sys::TupleDesc,
    operation: Operation,
) -> Result<pg_sys::SPIPlanPtr, CaptureError> {
    let shape = shape_of(tupdesc);
    if let Some(plan) = IMAGES_PLANS.with_borrow(|plans| {
        plans
            .get(&(relid, operation))
            .filter(|(planned_for, _)| *planned_for == shape)
            .map(|(_, plan)| *plan)
    }) {
        return Ok(plan);
    }
    let plan = kept_plan(operation.images_sql(), &mut [])?;
    if let Some((_, stale)) =
        IMAGES_PLANS.with_borrow_mut(|plans| plans.insert((relid, operation), (shape, plan)))
    {
        pg_sys::SPI_freeplan(stale);
    }
    Ok(plan)
}

unsafe fn kept_plan(
    sql: &CStr,
    argument_types: &mut [pg_sys::Oid],
) -> Result<pg_sys::SPIPlanPtr, CaptureError> {
    let plan = pg_sys::SPI_prepare(
        sql.as_ptr(),
        i32::try_from(argument_types.len()).unwrap_or_default(),
        argument_types.as_mut_ptr(),
    );
    if plan.is_null() {
        return Err(CaptureError::Spi {
            call: "SPI_prepare",
            code: pg_sys::SPI_result,
        });
    }
    spi_status("SPI_keepplan", pg_sys::SPI_keepplan(plan), 0)?;
    Ok(plan)
}

/// Run the append with its arguments, as the capture role.
unsafe fn append(
    relid: pg_sys::Oid,
    suffix: &CStr,
    images: *mut pg_sys::ArrayType,
) -> Result<(), CaptureError> {
    let plan = match APPEND_PLAN.with_borrow(|plan| *plan) {
        Some(plan) => plan,
        None => {
            let mut types = [pg_sys::REGCLASSOID, pg_sys::TEXTOID, pg_sys::JSONBARRAYOID];
            let plan = kept_plan(APPEND, &mut types)?;
            APPEND_PLAN.with_borrow_mut(|kept| *kept = Some(plan));
            plan
        }
    };
    let mut values = [
        pg_sys::Datum::from(relid),
        pg_sys::Datum::from(pg_sys::cstring_to_text(suffix.as_ptr())),
        pg_sys::Datum::from(images),
    ];
    let status = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), std::ptr::null(), false, 0);
    spi_status("SPI_execute_plan (append)", status, pg_sys::SPI_OK_SELECT)
}

/// The non-null values of the first column of an SPI result.
unsafe fn first_column(table: *mut pg_sys::SPITupleTable, rows: u64) -> Vec<pg_sys::Datum> {
    if table.is_null() || rows == 0 {
        return Vec::new();
    }
    let rows = usize::try_from(rows).unwrap_or(usize::MAX);
    let tuples = std::slice::from_raw_parts((*table).vals, rows);
    tuples
        .iter()
        .filter_map(|&tuple| {
            let mut is_null = false;
            let value = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, 1, &mut is_null);
            (!is_null).then_some(value)
        })
        .collect()
}

fn spi_status(call: &'static str, code: i32, expected: u32) -> Result<(), CaptureError> {
    if i32::try_from(expected) == Ok(code) {
        Ok(())
    } else {
        Err(CaptureError::Spi { call, code })
    }
}

/// `search_path = pg_catalog, pg_temp` while this lives, as a SECURITY DEFINER function's SET
/// clause would give. Both statements are parsed, planned, kept and run under it: with the
/// writer's path, an operator of theirs (the `=` inside NULLIF or IS DISTINCT FROM) would be
/// bound into a kept plan, and run for the next writer of this backend, or as webhooks_capture.
struct FixedSearchPath {
    nest_level: i32,
}

impl FixedSearchPath {
    unsafe fn enter() -> FixedSearchPath {
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        FixedSearchPath { nest_level }
    }
}

impl Drop for FixedSearchPath {
    fn drop(&mut self) {
        // SAFETY: pops the level enter() pushed; an error before this ends the (sub)transaction,
        // whose abort pops it instead
        unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) }
    }
}

/// The current user is webhooks_capture while this lives, in a security-restricted operation
/// (as in a SECURITY DEFINER call); dropping it restores the writer.
struct AsCaptureRole {
    saved_user: pg_sys::Oid,
    saved_context: i32,
}

impl AsCaptureRole {
    unsafe fn enter() -> AsCaptureRole {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let role = pg_sys::get_role_oid(CAPTURE_ROLE.as_ptr(), false);
        let restricted =
            (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
        pg_sys::SetUserIdAndSecContext(role, saved_context | restricted);
        AsCaptureRole {
            saved_user,
            saved_context,
        }
    }
}

impl Drop for AsCaptureRole {
    fn drop(&mut self) {
        // SAFETY: restores what enter() read; only ever called on the backend's own thread
        unsafe { pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context) }
    }
}
