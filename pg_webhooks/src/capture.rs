//! The capture trigger: a tracked table's row changes become events, in the writer's transaction.
//!
//! Why Rust and not a SECURITY DEFINER PL/pgSQL function: turning a row into JSON can run code
//! that whoever owns a column's type controls (a cast from that type to json, for one). Inside a
//! SECURITY DEFINER function that code ran with the rights of the role that created the
//! extension, a superuser. Here the row images are made with the writer's own rights (by
//! PostgreSQL's to_jsonb, called on each row of the statement's transition tables), and only
//! the append into the outbox (capture/outbox.rs) runs as `webhooks_capture`, a role that may
//! insert events and read the tracking table, nothing else, and that no one can log in as or
//! SET ROLE to. No user code runs in the append: it writes only jsonb values already made.
//!
//! A trigger function cannot be called outside a trigger, and the event's name and source come
//! from `webhooks.tracked`, not from trigger arguments: a row event can only come from a row
//! change of a tracked table (or of a partition of one). The arguments only name the parent
//! row's columns an event carries (webhooks.enrich), read as the writer like the row images.

mod kept;
mod outbox;
mod parent_values;
mod payload;
mod tracking;
mod wake;

use crate::sql_error::{self, SqlError};
use parent_values::{CaptureRunning, ParentValues};
use payload::RowImages;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::{c_char, CStr, CString};

/// The role the outbox INSERT runs as (created and granted in sql/90_privileges.sql).
const CAPTURE_ROLE: &CStr = c"webhooks_capture";

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
    #[error("the parent row's values came back as {0} rows, not one")]
    ParentValues(u64),
    #[error("the pg_webhooks object {} is missing from schema webhooks", .0.to_string_lossy())]
    Missing(&'static CStr),
    #[error("webhooks.{0}, the partition of webhooks.events for this event, is not a table: events are written only into tables")]
    PartitionNotATable(String),
}

impl SqlError for CaptureError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            CaptureError::NotStatementLevel
            | CaptureError::UnsupportedOperation(_)
            | CaptureError::TransitionTables => PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
            CaptureError::Trigger(_)
            | CaptureError::Spi { .. }
            | CaptureError::ParentValues(_)
            | CaptureError::Missing(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            CaptureError::PartitionNotATable(_) => PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
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
    let _running = CaptureRunning::enter();
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
    let trigger_data = trigger.trigger_data();
    // SAFETY: called from a trigger, so trigger_data and its transition tables are valid for the
    // whole call; an error anywhere ends the (sub)transaction, whose abort finishes SPI, pops
    // the search_path level and restores the user id.
    unsafe {
        let relation = trigger_data.tg_relation;
        // the row images are made as the writer, but with a fixed path: the writer's path must
        // not pick the functions a column's conversion to json looks up
        let _fixed_path = FixedSearchPath::enter();
        // SPI now (the parent values are read through it), so the images are made in its
        // procedure context: they live until SPI_finish, after the append
        spi_status("SPI_connect", pg_sys::SPI_connect(), pg_sys::SPI_OK_CONNECT)?;
        let tupdesc = (*relation).rd_att;
        let rowtype = (*tupdesc).tdtypeid;
        let parent_arguments = trigger_arguments(trigger_data.tg_trigger);
        let mut parents = ParentValues::prepare((*relation).rd_id, rowtype, &parent_arguments)?;
        let mut to_jsonb = ToJsonb::for_rowtype(rowtype);
        let mut new_rows = TransitionRows::read(trigger_data.tg_newtable, tupdesc);
        let mut old_rows = TransitionRows::read(trigger_data.tg_oldtable, tupdesc);
        let images = match operation {
            Operation::Insert => {
                let (new, parent) = to_jsonb.images(&mut new_rows, parents.as_mut())?;
                Images::of(new, Vec::new(), parent)
            }
            Operation::Delete => {
                let (old, parent) = to_jsonb.images(&mut old_rows, parents.as_mut())?;
                Images::of(Vec::new(), old, parent)
            }
            Operation::Update => {
                to_jsonb.changed_images(&mut new_rows, &mut old_rows, parents.as_mut())?
            }
        };
        drop((new_rows, old_rows));
        if let Some(parents) = parents {
            parents.finish();
        }
        to_jsonb.finish();
        if !images.is_empty() {
            // the path again: a cast the images ran may have set one of its own (set_config
            // with is_local), which the triggers of webhooks.events would otherwise resolve by
            let _append_path = FixedSearchPath::unless_it_holds();
            // as webhooks_capture, so the event id's nextval (and any trigger of the outbox)
            // runs with that role's rights, not the writer's
            let _capture_role = AsCaptureRole::enter();
            kept::catch_up();
            if let Some(tracking) = tracking::tracking_of(relation)? {
                let mut writer = outbox::EventWriter::open(&tracking, operation.suffix())?;
                for event in images.events() {
                    writer.append(|| event.payload())?;
                }
                writer.close();
                wake::wake_an_idle_relay(tracking.namespace)?;
            }
        }
        spi_status("SPI_finish", pg_sys::SPI_finish(), pg_sys::SPI_OK_FINISH)?;
    }
    Ok(())
}

/// The trigger's arguments, as PostgreSQL keeps them (in the database's encoding).
unsafe fn trigger_arguments(trigger: *const pg_sys::Trigger) -> Vec<CString> {
    let trigger = &*trigger;
    let count = usize::try_from(trigger.tgnargs).unwrap_or_default();
    (0..count)
        .map(|n| CStr::from_ptr(*trigger.tgargs.add(n)).to_owned())
        .collect()
}

/// A statement's row images: new, old, and the parent rows' values of an enriched table, one
/// of each (that the operation has) per event, in order.
struct Images {
    new: Vec<pg_sys::Datum>,
    old: Vec<pg_sys::Datum>,
    parent: Vec<pg_sys::Datum>,
}

impl Images {
    fn of(new: Vec<pg_sys::Datum>, old: Vec<pg_sys::Datum>, parent: Vec<pg_sys::Datum>) -> Images {
        Images { new, old, parent }
    }

    fn is_empty(&self) -> bool {
        self.new.is_empty() && self.old.is_empty()
    }

    /// Each event's images.
    fn events(&self) -> impl Iterator<Item = RowImages> + '_ {
        let count = self.new.len().max(self.old.len());
        (0..count).map(|event| RowImages {
            new: self.new.get(event).copied(),
            old: self.old.get(event).copied(),
            parent: self.parent.get(event).copied(),
        })
    }
}

/// An array of `element_type`, a varlena type (text, jsonb), of these values.
unsafe fn varlena_array(values: &mut [pg_sys::Datum], element_type: pg_sys::Oid) -> pg_sys::Datum {
    let array = pg_sys::construct_array(
        values.as_mut_ptr(),
        i32::try_from(values.len()).unwrap_or(i32::MAX),
        element_type,
        -1,
        false,
        pg_sys::TYPALIGN_INT as c_char,
    );
    pg_sys::Datum::from(array)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
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

/// The rows of one transition table, in order. The table may be shared with other triggers of
/// the statement: it is read through a read pointer of its own, from the start, as a query over
/// it would.
struct TransitionRows {
    store: *mut pg_sys::Tuplestorestate,
    slot: *mut pg_sys::TupleTableSlot,
}

impl TransitionRows {
    /// A reader of the table (one that reads nothing when the statement has no such table).
    unsafe fn read(
        store: *mut pg_sys::Tuplestorestate,
        tupdesc: pg_sys::TupleDesc,
    ) -> TransitionRows {
        if store.is_null() {
            return TransitionRows {
                store,
                slot: std::ptr::null_mut(),
            };
        }
        let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, reader);
        pg_sys::tuplestore_rescan(store);
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
        TransitionRows { store, slot }
    }

    /// The next row as a composite datum of its own, allocated in the current memory context.
    unsafe fn next_row(&mut self) -> Option<pg_sys::Datum> {
        if self.store.is_null()
            || !pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot)
        {
            return None;
        }
        let row = pg_sys::ExecFetchSlotHeapTupleDatum(self.slot);
        // a tuple read back from a spilled store belongs to the slot and lives in the current
        // (per-row) context: free it now, before that context is reset under the slot
        if let Some(clear) = (*(*self.slot).tts_ops).clear {
            clear(self.slot);
        }
        Some(row)
    }
}

impl Drop for TransitionRows {
    fn drop(&mut self) {
        if !self.slot.is_null() {
            // SAFETY: made by MakeSingleTupleTableSlot in read(), dropped once
            unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) }
        }
    }
}

/// PostgreSQL's own `to_jsonb(anyelement)` for rows of one type, called directly: the same JSON
/// as `to_jsonb(row)` in SQL (a column type's cast to json included), without an executor.
/// Each row is converted in a memory context of its own, reset after it, and only the image is
/// kept, at its exact size: the conversion's working memory (several kB a row) would otherwise
/// stay until the statement ends, gigabytes for a million-row UPDATE.
struct ToJsonb {
    function: pg_sys::FmgrInfo,
    per_row: pg_sys::MemoryContext,
}

impl ToJsonb {
    /// to_jsonb learns its argument's type from the call's expression, as for any polymorphic
    /// function: so the call carries one, with a placeholder argument of the row type.
    unsafe fn for_rowtype(rowtype: pg_sys::Oid) -> ToJsonb {
        let mut function: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut function);
        let argument = pg_sys::makeNullConst(rowtype, -1, pg_sys::InvalidOid);
        let arguments = pg_sys::lappend(std::ptr::null_mut(), argument.cast());
        let call = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_TO_JSONB),
            pg_sys::JSONBOID,
            arguments,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        );
        function.fn_expr = call.cast();
        let per_row = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"pg_webhooks row image".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        ToJsonb { function, per_row }
    }

    /// Frees the per-row context. Not a Drop: after an ERROR the per-row context may be the
    /// current one, and the (sub)transaction's abort frees it with its parent anyway.
    unsafe fn finish(self) {
        pg_sys::MemoryContextDelete(self.per_row);
    }

    /// to_jsonb of a row, in the per-row context.
    unsafe fn convert(&mut self, row: pg_sys::Datum) -> pg_sys::Datum {
        pg_sys::FunctionCall1Coll(&mut self.function, pg_sys::InvalidOid, row)
    }

    /// Runs `each` in the per-row context, then resets it; `each` copies out what it keeps.
    unsafe fn in_row_context<T>(&mut self, each: impl FnOnce(&mut ToJsonb) -> T) -> T {
        let outer = pg_sys::MemoryContextSwitchTo(self.per_row);
        let kept = each(self);
        pg_sys::MemoryContextSwitchTo(outer);
        pg_sys::MemoryContextReset(self.per_row);
        kept
    }

    /// The image of every row, in order, and each row's parent values when asked for.
    unsafe fn images(
        &mut self,
        rows: &mut TransitionRows,
        mut parents: Option<&mut ParentValues>,
    ) -> Result<(Vec<pg_sys::Datum>, Vec<pg_sys::Datum>), CaptureError> {
        let outer = pg_sys::CurrentMemoryContext;
        let (mut images, mut parent_values) = (Vec::new(), Vec::new());
        loop {
            let more = self.in_row_context(|to_jsonb| {
                let Some(row) = rows.next_row() else {
                    return Ok(false);
                };
                images.push(copy_into(outer, to_jsonb.convert(row)));
                if let Some(parents) = parents.as_deref_mut() {
                    parent_values.push(parents.of(row, outer)?);
                }
                Ok::<_, CaptureError>(true)
            })?;
            if !more {
                return Ok((images, parent_values));
            }
        }
    }

    /// The new and old images of the rows an UPDATE changed. An update that changes nothing is
    /// no event. Old and new images are paired by position: PostgreSQL appends a row's old and
    /// new image to the transition tables in the same step, also when an update moves the row
    /// to another partition. Values are compared as jsonb, which works for every column type
    /// (a row comparison fails on json or point columns). tests/regress/sql/30_capture.sql
    /// guards all three.
    /// The parent values are those of the new row.
    unsafe fn changed_images(
        &mut self,
        new_rows: &mut TransitionRows,
        old_rows: &mut TransitionRows,
        mut parents: Option<&mut ParentValues>,
    ) -> Result<Images, CaptureError> {
        let outer = pg_sys::CurrentMemoryContext;
        let jsonb_eq = pg_sys::Oid::from(pg_sys::F_JSONB_EQ);
        let mut images = Images::of(Vec::new(), Vec::new(), Vec::new());
        loop {
            let more = self.in_row_context(|to_jsonb| {
                let (Some(new_row), Some(old_row)) = (new_rows.next_row(), old_rows.next_row())
                else {
                    return Ok(false);
                };
                let (new, old) = (to_jsonb.convert(new_row), to_jsonb.convert(old_row));
                let equal = pg_sys::OidFunctionCall2Coll(jsonb_eq, pg_sys::InvalidOid, old, new);
                if equal.value() == 0 {
                    images.new.push(copy_into(outer, new));
                    images.old.push(copy_into(outer, old));
                    if let Some(parents) = parents.as_deref_mut() {
                        images.parent.push(parents.of(new_row, outer)?);
                    }
                }
                Ok::<_, CaptureError>(true)
            })?;
            if !more {
                return Ok(images);
            }
        }
    }
}

/// A copy of a jsonb value in `context`, at its exact size.
unsafe fn copy_into(context: pg_sys::MemoryContext, jsonb: pg_sys::Datum) -> pg_sys::Datum {
    let outer = pg_sys::MemoryContextSwitchTo(context);
    let copy = pg_sys::pg_detoast_datum_copy(jsonb.cast_mut_ptr());
    pg_sys::MemoryContextSwitchTo(outer);
    pg_sys::Datum::from(copy)
}

fn spi_status(call: &'static str, code: i32, expected: u32) -> Result<(), CaptureError> {
    if i32::try_from(expected) == Ok(code) {
        Ok(())
    } else {
        Err(CaptureError::Spi { call, code })
    }
}

/// `search_path = pg_catalog, pg_temp` while this lives, as a SECURITY DEFINER function's SET
/// clause would give. The row images and the parent values are made under it: with the
/// writer's path, a cast or operator of theirs could be bound into a parent values plan the
/// backend keeps, and run for the next writer of this backend.
struct FixedSearchPath {
    nest_level: i32,
}

impl FixedSearchPath {
    const PATH: &CStr = c"pg_catalog, pg_temp";

    unsafe fn enter() -> FixedSearchPath {
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            Self::PATH.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        FixedSearchPath { nest_level }
    }

    /// The path entered again, unless the setting still is the fixed one (the same text is the
    /// same path: it names no `$user`): a level costs a GUC save and restore, about 3% of a
    /// single-row INSERT's instructions (BENCHMARKS.md).
    unsafe fn unless_it_holds() -> Option<FixedSearchPath> {
        let current = pg_sys::namespace_search_path;
        let holds = !current.is_null() && CStr::from_ptr(current) == Self::PATH;
        (!holds).then(|| FixedSearchPath::enter())
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
