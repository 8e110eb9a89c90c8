//! The append: a statement's events written into webhooks.events without SQL.
//!
//! Why not an INSERT through SPI: starting the executor on the kept plan (a ModifyTable over an
//! index scan of webhooks.tracked, its projection, the wake query) was most of what capture cost
//! a writer, and every event paid it (BENCHMARKS.md, "Capture without the executor"). Here the
//! tracking row is found through its index, the row values are made in Rust, and the row goes
//! into its partition through the routines INSERT, COPY FROM and logical replication use:
//! partition routing, then what ExecInsert does for a routed row (triggers of every kind and
//! transition tables, defaults of columns a DBA added, generated columns, constraints, the row
//! and its index entries), under the INSERT privilege of the current user, webhooks_capture.
//! Nothing here looks up a name on the search_path or runs code a writer controls: the values
//! are jsonb images already made, the extension's own sequence, and built-in types. What a DBA
//! adds to webhooks.events runs as webhooks_capture, as it did for the SQL INSERT
//! (tests/regress/sql/31_outbox_additions.sql). Row-level security policies on webhooks.events
//! are not applied.

use super::kept::Read;
use super::tracking::Tracking;
use super::CaptureError;
use pgrx::pg_sys;
use pgrx::PgBox;
use std::cell::Cell;
use std::ffi::{c_void, CStr};

pub(super) const SCHEMA: &CStr = c"webhooks";

// Partition routing and generated columns, declared in executor/execPartition.h,
// catalog/partition.h and executor/nodeModifyTable.h, which pgrx does not bind; called through `guarded` like the functions it binds.
mod unbound {
    use pgrx::pg_sys;
    use std::ffi::c_void;

    unsafe extern "C-unwind" {
        pub(super) fn ExecSetupPartitionTupleRouting(
            estate: *mut pg_sys::EState,
            relation: pg_sys::Relation,
        ) -> *mut c_void;
        pub(super) fn ExecFindPartition(
            mtstate: *mut pg_sys::ModifyTableState,
            root: *mut pg_sys::ResultRelInfo,
            routing: *mut c_void,
            slot: *mut pg_sys::TupleTableSlot,
            estate: *mut pg_sys::EState,
        ) -> *mut pg_sys::ResultRelInfo;
        pub(super) fn ExecCleanupTupleRouting(
            mtstate: *mut pg_sys::ModifyTableState,
            routing: *mut c_void,
        );
        pub(super) fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List;
        pub(super) fn ExecComputeStoredGenerated(
            result: *mut pg_sys::ResultRelInfo,
            estate: *mut pg_sys::EState,
            slot: *mut pg_sys::TupleTableSlot,
            operation: pg_sys::CmdType::Type,
        );
    }
}

/// A call into PostgreSQL whose ERROR becomes a Rust panic, then an ERROR again at the trigger's
/// boundary, as for every function pgrx binds.
unsafe fn guarded<T>(call: impl FnOnce() -> T) -> T {
    pg_sys::ffi::pg_guard_ffi_boundary(call)
}

/// One row of a table of the extension's schema, as a scan returned it.
pub(super) struct Row {
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
}

impl Row {
    pub(super) unsafe fn value(
        &self,
        name: &'static CStr,
    ) -> Result<Option<pg_sys::Datum>, CaptureError> {
        let mut is_null = false;
        let attnum = column(self.tupdesc, name)?;
        let value = pg_sys::heap_getattr(self.tuple, attnum.into(), self.tupdesc, &mut is_null);
        Ok((!is_null).then_some(value))
    }
}

/// The first row of `table` that `read` makes something of, scanned through `index` with the
/// latest snapshot (what is committed now, and this transaction's own changes), where `key`'s
/// column, if given, equals its oid.
pub(super) unsafe fn first_row<T>(
    namespace: pg_sys::Oid,
    table: &'static CStr,
    index: &'static CStr,
    key: Option<(&'static CStr, pg_sys::Oid)>,
    mut read: impl FnMut(&Row) -> Result<Option<T>, CaptureError>,
) -> Result<Option<T>, CaptureError> {
    let relation = open(namespace, table, pg_sys::AccessShareLock)?;
    let tupdesc = (*relation).rd_att;
    let mut keys: Vec<pg_sys::ScanKeyData> = Vec::new();
    if let Some((name, oid)) = key {
        let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut scan_key,
            column(tupdesc, name)?,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::Oid::from(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(oid),
        );
        keys.push(scan_key);
    }
    let scan = pg_sys::systable_beginscan(
        relation,
        relation_oid(namespace, index)?,
        true,
        pg_sys::GetLatestSnapshot(),
        i32::try_from(keys.len()).unwrap_or_default(),
        keys.as_mut_ptr(),
    );
    let mut found = Ok(None);
    while let Ok(None) = found {
        let tuple = pg_sys::systable_getnext(scan);
        if tuple.is_null() {
            break;
        }
        found = read(&Row { tuple, tupdesc });
    }
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(relation, pg_sys::AccessShareLock as i32);
    found
}

/// pg_partition_root(): the topmost ancestor of a partition that is a table; the table itself
/// otherwise (a foreign table among the partitions included, as that function gives NULL there).
pub(super) unsafe fn partition_root(relation: pg_sys::Relation) -> pg_sys::Oid {
    let form = &*(*relation).rd_rel;
    let relid = (*relation).rd_id;
    let can_be_partition = [pg_sys::RELKIND_RELATION, pg_sys::RELKIND_PARTITIONED_TABLE]
        .contains(&(form.relkind as u8));
    if !form.relispartition || !can_be_partition {
        return relid;
    }
    let ancestors = guarded(|| unbound::get_partition_ancestors(relid));
    if ancestors.is_null() || (*ancestors).length == 0 {
        return relid;
    }
    let last = usize::try_from((*ancestors).length - 1).unwrap_or_default();
    (*(*ancestors).elements.add(last)).oid_value
}

/// The statement's inserts into webhooks.events: one executor state, one partition routing, the
/// table's statement triggers and transition tables, as one INSERT of all its events.
pub(super) struct EventWriter {
    events: pg_sys::Relation,
    estate: *mut pg_sys::EState,
    modify: *mut pg_sys::ModifyTableState,
    routing: *mut c_void,
    root: *mut pg_sys::ResultRelInfo,
    transitions: *mut pg_sys::TransitionCaptureState,
    slot: *mut pg_sys::TupleTableSlot,
    columns: EventColumns,
    defaults: Vec<(usize, *mut pg_sys::ExprState)>,
    event: pg_sys::Datum,
    source: pg_sys::Oid,
    origin: Option<pg_sys::Datum>,
    sequence: pg_sys::Oid,
    per_row: pg_sys::MemoryContext,
}

/// Where each value goes in a row of webhooks.events (0-based).
#[derive(Clone, Copy)]
struct EventColumns {
    id: usize,
    created_at: usize,
    xid: usize,
    event: usize,
    source: usize,
    origin: usize,
    payload: usize,
}

impl EventWriter {
    /// A writer of `tracking`'s events, all named `<entity><suffix>`. Checks the current user's
    /// INSERT privilege on webhooks.events and fires its BEFORE STATEMENT triggers.
    pub(super) unsafe fn open(
        tracking: &Tracking,
        suffix: &CStr,
    ) -> Result<EventWriter, CaptureError> {
        let (events, table) = EventTable::open(tracking.namespace)?;
        let EventTable {
            sequence, columns, ..
        } = table;
        let estate = pg_sys::CreateExecutorState();
        init_range_table(estate, events);
        let root =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        pg_sys::InitResultRelInfo(root, events, 1, std::ptr::null_mut(), 0);
        (*estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        let modify =
            PgBox::<pg_sys::ModifyTableState>::alloc_node(pg_sys::NodeTag::T_ModifyTableState)
                .into_pg();
        (*modify).ps.plan = std::ptr::null_mut();
        (*modify).ps.state = estate;
        (*modify).operation = pg_sys::CmdType::CMD_INSERT;
        (*modify).resultRelInfo = root;
        (*modify).rootResultRelInfo = root;
        let routing = guarded(|| unbound::ExecSetupPartitionTupleRouting(estate, events));
        let slot = pg_sys::table_slot_create(events, &mut (*estate).es_tupleTable);
        let defaults = column_defaults(events, &columns, estate);
        let mut event = tracking.entity.clone();
        event.extend_from_slice(suffix.to_bytes());
        let event = pg_sys::cstring_to_text_with_len(
            event.as_ptr().cast(),
            i32::try_from(event.len()).unwrap_or(i32::MAX),
        );
        // the table's AFTER triggers queue their events as in a query of their own
        pg_sys::AfterTriggerBeginQuery();
        let transitions = pg_sys::MakeTransitionCaptureState(
            (*root).ri_TrigDesc,
            (*events).rd_id,
            pg_sys::CmdType::CMD_INSERT,
        );
        pg_sys::ExecBSInsertTriggers(estate, root);
        Ok(EventWriter {
            events,
            estate,
            modify,
            routing,
            root,
            transitions,
            slot,
            columns,
            defaults,
            event: pg_sys::Datum::from(event),
            source: tracking.source,
            origin: origin(),
            sequence,
            per_row: per_row_context(),
        })
    }

    /// Appends one event; `payload` makes its payload, in memory freed after the row is written.
    pub(super) unsafe fn append(
        &mut self,
        payload: impl FnOnce() -> pg_sys::Datum,
    ) -> Result<(), CaptureError> {
        let outer = pg_sys::MemoryContextSwitchTo(self.per_row);
        let written = self.write_row(payload);
        pg_sys::MemoryContextSwitchTo(outer);
        // what routing, constraints, index expressions and triggers allocated for the row
        let per_tuple = (*self.estate).es_per_tuple_exprcontext;
        if !per_tuple.is_null() {
            pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
        }
        pg_sys::MemoryContextReset(self.per_row);
        written
    }

    unsafe fn write_row(
        &mut self,
        payload: impl FnOnce() -> pg_sys::Datum,
    ) -> Result<(), CaptureError> {
        let slot = self.slot;
        pg_sys::ExecClearTuple(slot);
        let natts = usize::try_from((*(*slot).tts_tupleDescriptor).natts).unwrap_or_default();
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        for &(column, default) in &self.defaults {
            nulls[column] = false;
            values[column] = evaluate(default, self.estate, &mut nulls[column]);
        }
        let columns = &self.columns;
        let id = pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_NEXTVAL),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(self.sequence),
        );
        for (column, value) in [
            (columns.id, Some(id)),
            (
                columns.created_at,
                Some(pg_sys::Datum::from(
                    pg_sys::GetCurrentTransactionStartTimestamp(),
                )),
            ),
            (
                columns.xid,
                Some(pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value)),
            ),
            (columns.event, Some(self.event)),
            (columns.source, Some(pg_sys::Datum::from(self.source))),
            (columns.origin, self.origin),
            (columns.payload, Some(payload())),
        ] {
            values[column] = value.unwrap_or(pg_sys::Datum::from(0));
            nulls[column] = value.is_none();
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        let partition = guarded(|| {
            unbound::ExecFindPartition(self.modify, self.root, self.routing, slot, self.estate)
        });
        let partition_table = (*partition).ri_RelationDesc;
        if (*(*partition_table).rd_rel).relkind as u8 != pg_sys::RELKIND_RELATION {
            let name = CStr::from_ptr(pg_sys::get_rel_name((*partition_table).rd_id));
            return Err(CaptureError::PartitionNotATable(
                name.to_string_lossy().into_owned(),
            ));
        }
        // routing made the partition's slot when it made the map, in the statement's memory
        let map = root_to_partition_map(partition, self.estate);
        let row = if map.is_null() {
            slot
        } else {
            pg_sys::execute_attr_map_slot((*map).attrMap, slot, (*partition).ri_PartitionTupleSlot)
        };
        insert_routed(partition, self.estate, row, self.transitions);
        pg_sys::ExecClearTuple(slot);
        Ok(())
    }

    /// Fires the table's AFTER STATEMENT and queued AFTER triggers, and releases what open()
    /// took.
    pub(super) unsafe fn close(self) {
        pg_sys::ExecASInsertTriggers(self.estate, self.root, self.transitions);
        pg_sys::AfterTriggerEndQuery(self.estate);
        guarded(|| unbound::ExecCleanupTupleRouting(self.modify, self.routing));
        pg_sys::ExecResetTupleTable((*self.estate).es_tupleTable, false);
        pg_sys::ExecCloseResultRelations(self.estate);
        pg_sys::ExecCloseRangeTableRelations(self.estate);
        pg_sys::FreeExecutorState(self.estate);
        pg_sys::MemoryContextDelete(self.per_row);
        pg_sys::table_close(self.events, pg_sys::NoLock as i32);
    }
}

/// What the append needs to know of webhooks.events, kept by each backend (looking the names up
/// cost a single-row write about 3.5k instructions) until an invalidation of the table or of
/// its sequence: any DDL on them, a column added or dropped, a partition made, a sequence
/// renamed, sends one (capture/kept.rs).
#[derive(Clone, Copy)]
struct EventTable {
    relid: pg_sys::Oid,
    /// The extension's schema: kept under another (the extension made anew), it is not used.
    namespace: pg_sys::Oid,
    sequence: pg_sys::Oid,
    columns: EventColumns,
}

thread_local! {
    static KEPT_EVENT_TABLE: Cell<Option<EventTable>> = const { Cell::new(None) };
}

impl EventTable {
    /// webhooks.events, opened for an INSERT, and what is known of it.
    unsafe fn open(namespace: pg_sys::Oid) -> Result<(pg_sys::Relation, EventTable), CaptureError> {
        let lock = pg_sys::RowExclusiveLock as i32;
        let kept = || {
            KEPT_EVENT_TABLE
                .get()
                .filter(|kept| kept.namespace == namespace)
        };
        if let Some(before) = kept() {
            let events = pg_sys::table_open(before.relid, lock);
            // the lock may have waited for DDL on the table, whose invalidation, read once the
            // lock was granted, forgot what was kept
            if kept().is_some_and(|after| after.relid == before.relid) {
                return Ok((events, before));
            }
            pg_sys::table_close(events, lock);
        }
        let read_begun = Read::begin();
        let events = pg_sys::table_open(relation_oid(namespace, c"events")?, lock);
        let table = EventTable {
            relid: (*events).rd_id,
            namespace,
            sequence: relation_oid(namespace, c"events_id_seq")?,
            columns: EventColumns::of((*events).rd_att)?,
        };
        if read_begun.may_be_kept() {
            KEPT_EVENT_TABLE.set(Some(table));
        }
        Ok((events, table))
    }
}

/// Forgets what an invalidation of `relid` may have changed (InvalidOid: everything).
pub(super) fn forget(relid: pg_sys::Oid) {
    if KEPT_EVENT_TABLE.get().is_some_and(|kept| {
        relid == pg_sys::InvalidOid || relid == kept.relid || relid == kept.sequence
    }) {
        KEPT_EVENT_TABLE.set(None);
    }
}

/// The defaults of the columns a DBA added to webhooks.events (the capture sets the others), as
/// an INSERT would fill them in; prepared once per statement.
unsafe fn column_defaults(
    events: pg_sys::Relation,
    columns: &EventColumns,
    estate: *mut pg_sys::EState,
) -> Vec<(usize, *mut pg_sys::ExprState)> {
    let set_by_capture = columns.all();
    let tupdesc = pgrx::PgTupleDesc::from_pg_unchecked((*events).rd_att);
    tupdesc
        .iter()
        .enumerate()
        .filter(|(column, attribute)| {
            !attribute.is_dropped()
                && attribute.attgenerated == 0
                && !set_by_capture.contains(column)
        })
        .filter_map(|(column, attribute)| {
            let default = pg_sys::build_column_default(events, attribute.attnum.into());
            (!default.is_null()).then(|| (column, pg_sys::ExecPrepareExpr(default.cast(), estate)))
        })
        .collect()
}

/// The value of a prepared expression, in the per-tuple memory of `estate`.
unsafe fn evaluate(
    expression: *mut pg_sys::ExprState,
    estate: *mut pg_sys::EState,
    is_null: &mut bool,
) -> pg_sys::Datum {
    let mut context = (*estate).es_per_tuple_exprcontext;
    if context.is_null() {
        context = pg_sys::MakePerTupleExprContext(estate);
    }
    let outer = pg_sys::MemoryContextSwitchTo((*context).ecxt_per_tuple_memory);
    let value = match (*expression).evalfunc {
        Some(function) => guarded(|| function(expression, context, is_null)),
        None => {
            *is_null = true;
            pg_sys::Datum::from(0)
        }
    };
    pg_sys::MemoryContextSwitchTo(outer);
    value
}

/// The insert of a row routed into `partition`, as INSERT does it (ExecInsert for a routed
/// row): BEFORE ROW triggers, stored generated columns, constraints, the row and its index
/// entries, AFTER ROW triggers and transition tables. The partition check runs only when a
/// BEFORE ROW trigger may have changed the row: routing chose the partition by that row. The
/// check prepares the partition's constraint expression per statement, and was the largest part
/// of the append after the insert itself.
unsafe fn insert_routed(
    partition: *mut pg_sys::ResultRelInfo,
    estate: *mut pg_sys::EState,
    slot: *mut pg_sys::TupleTableSlot,
    transitions: *mut pg_sys::TransitionCaptureState,
) {
    let relation = (*partition).ri_RelationDesc;
    let triggers = (*partition).ri_TrigDesc;
    let before_row = !triggers.is_null() && (*triggers).trig_insert_before_row;
    if before_row && !pg_sys::ExecBRInsertTriggers(estate, partition, slot) {
        return; // a trigger skipped the row, as it may in any INSERT
    }
    let constraints = (*(*relation).rd_att).constr;
    if !constraints.is_null() && (*constraints).has_generated_stored {
        guarded(|| {
            unbound::ExecComputeStoredGenerated(
                partition,
                estate,
                slot,
                pg_sys::CmdType::CMD_INSERT,
            )
        });
    }
    if !constraints.is_null() {
        pg_sys::ExecConstraints(partition, slot, estate);
    }
    if before_row {
        pg_sys::ExecPartitionCheck(partition, slot, estate, true);
    }
    pg_sys::simple_table_tuple_insert(relation, slot);
    let mut recheck: *mut pg_sys::List = std::ptr::null_mut();
    if (*partition).ri_NumIndices > 0 {
        recheck = insert_index_entries(partition, slot, estate);
    }
    pg_sys::ExecARInsertTriggers(estate, partition, slot, recheck, transitions);
    pg_sys::list_free(recheck);
}

/// ExecInsertIndexTuples for a new row (not an update, no ON CONFLICT).
unsafe fn insert_index_entries(
    partition: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) -> *mut pg_sys::List {
    use pg_sys::ExecInsertIndexTuples as insert;
    let (update, no_dup, conflict, arbiters) =
        (false, false, std::ptr::null_mut(), std::ptr::null_mut());
    #[cfg(feature = "pg15")]
    return insert(partition, slot, estate, update, no_dup, conflict, arbiters);
    #[cfg(not(feature = "pg15"))]
    return insert(
        partition, slot, estate, update, no_dup, conflict, arbiters, false,
    );
}

impl EventColumns {
    unsafe fn of(tupdesc: pg_sys::TupleDesc) -> Result<EventColumns, CaptureError> {
        let index =
            |name| column(tupdesc, name).map(|attnum| usize::from(attnum.unsigned_abs()) - 1);
        Ok(EventColumns {
            id: index(c"id")?,
            created_at: index(c"created_at")?,
            xid: index(c"xid")?,
            event: index(c"event")?,
            source: index(c"source")?,
            origin: index(c"origin")?,
            payload: index(c"payload")?,
        })
    }

    fn all(&self) -> [usize; 7] {
        [
            self.id,
            self.created_at,
            self.xid,
            self.event,
            self.source,
            self.origin,
            self.payload,
        ]
    }
}

/// The range table of one relation, as the executor's checks and error messages read it, and
/// the check of the current user's INSERT privilege on it (as webhooks_capture: what a DBA
/// revokes from that role applies to captured events too).
unsafe fn init_range_table(estate: *mut pg_sys::EState, relation: pg_sys::Relation) {
    let entry =
        PgBox::<pg_sys::RangeTblEntry>::alloc_node(pg_sys::NodeTag::T_RangeTblEntry).into_pg();
    (*entry).rtekind = pg_sys::RTEKind::RTE_RELATION;
    (*entry).relid = (*relation).rd_id;
    (*entry).relkind = (*(*relation).rd_rel).relkind;
    (*entry).rellockmode = pg_sys::RowExclusiveLock as i32;
    let range_table = pg_sys::lappend(std::ptr::null_mut(), entry.cast());
    #[cfg(feature = "pg15")]
    {
        (*entry).requiredPerms = pg_sys::AclMode::from(pg_sys::ACL_INSERT);
        pg_sys::ExecCheckRTPerms(range_table, true);
        pg_sys::ExecInitRangeTable(estate, range_table);
    }
    #[cfg(not(feature = "pg15"))]
    {
        let mut permissions: *mut pg_sys::List = std::ptr::null_mut();
        let permission = pg_sys::addRTEPermissionInfo(&mut permissions, entry);
        (*permission).requiredPerms = pg_sys::AclMode::from(pg_sys::ACL_INSERT);
        pg_sys::ExecCheckPermissions(range_table, permissions, true);
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::ExecInitRangeTable(estate, range_table, permissions);
        #[cfg(feature = "pg18")]
        pg_sys::ExecInitRangeTable(
            estate,
            range_table,
            permissions,
            pg_sys::bms_make_singleton(1),
        );
    }
}

/// How a row of the root becomes a row of the partition, when their columns differ.
unsafe fn root_to_partition_map(
    partition: *mut pg_sys::ResultRelInfo,
    #[allow(unused_variables)] estate: *mut pg_sys::EState,
) -> *mut pg_sys::TupleConversionMap {
    #[cfg(feature = "pg15")]
    return (*partition).ri_RootToPartitionMap;
    #[cfg(not(feature = "pg15"))]
    return pg_sys::ExecGetRootToChildMap(partition, estate);
}

/// webhooks._origin(): pg_webhooks.origin, or else application_name, if not empty.
unsafe fn origin() -> Option<pg_sys::Datum> {
    [c"pg_webhooks.origin", c"application_name"]
        .into_iter()
        .find_map(|setting| {
            let value = pg_sys::GetConfigOption(setting.as_ptr(), true, false);
            (!value.is_null() && *value != 0)
                .then(|| pg_sys::Datum::from(pg_sys::cstring_to_text(value)))
        })
}

pub(super) unsafe fn relation_oid(
    namespace: pg_sys::Oid,
    name: &'static CStr,
) -> Result<pg_sys::Oid, CaptureError> {
    let relid = pg_sys::get_relname_relid(name.as_ptr(), namespace);
    if relid == pg_sys::InvalidOid {
        return Err(CaptureError::Missing(name));
    }
    Ok(relid)
}

pub(super) unsafe fn open(
    namespace: pg_sys::Oid,
    name: &'static CStr,
    lock: u32,
) -> Result<pg_sys::Relation, CaptureError> {
    Ok(pg_sys::table_open(
        relation_oid(namespace, name)?,
        lock as i32,
    ))
}

/// The attribute number of a column of the extension's own tables. Compares the names' bytes:
/// pgrx's iterator with its UTF-8 names made this 5% of a single-row capture.
unsafe fn column(tupdesc: pg_sys::TupleDesc, name: &'static CStr) -> Result<i16, CaptureError> {
    let tupdesc = pgrx::PgTupleDesc::from_pg_unchecked(tupdesc);
    (0..tupdesc.len())
        .filter_map(|i| tupdesc.get(i))
        .find(|attribute| {
            !attribute.attisdropped && CStr::from_ptr(attribute.attname.data.as_ptr()) == name
        })
        .map(|attribute| attribute.attnum)
        .ok_or(CaptureError::Missing(name))
}

unsafe fn per_row_context() -> pg_sys::MemoryContext {
    pg_sys::AllocSetContextCreateInternal(
        pg_sys::CurrentMemoryContext,
        c"pg_webhooks event row".as_ptr(),
        pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
        pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
        pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
    )
}
