//! The parent row's values an enriched table's events carry (webhooks.enrich): read per row,
//! as the writer, through the table's foreign key.
//!
//! Building the query from the catalogs and planning it cost about 2 ms, twenty times what the
//! rest of a single-row INSERT's capture costs, so each backend keeps the plan per table and
//! trigger arguments. A relcache invalidation of a table a plan was made from (the table, its
//! partition root, the parent: a dropped foreign key, a renamed column) marks the plans stale;
//! the next statement frees them and builds anew, so a schema change never reaches a kept plan
//! that would fail on it. A plan PostgreSQL itself reset (a renamed schema sends no relcache
//! invalidation) is made anew too. A statement locks the parent before it looks, so a rename
//! it waited for is seen (tests/isolation/specs/parent_renamed_beside_write.spec). All rows of
//! a statement read the parent in one snapshot, taken after its own changes. Stale plans are freed only by a capture that runs inside no other:
//! a cast the row images run may write to another tracked table, whose capture must not free
//! the plan the outer one is using.

use super::{copy_into, spi_status, varlena_array, CaptureError};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};

/// Builds the query that reads an enriched table's parent row: the chosen columns as one jsonb
/// object, or JSON null when the row's key is NULL or its parent gone (its delete cascading to
/// this row), found through the foreign key on the key column, with that key's own equality
/// operator. A column the parent no longer has is sent as null, and a table whose foreign key
/// was dropped sends null, so neither stops writes. Also returns the tables the query was made
/// from: the partition root and the parent. Run as the writer, under the fixed path, on
/// catalogs anyone may read. $1 the table written, $2 its key column, $3 the parent columns.
const PARENT_QUERY: &CStr = c"SELECT COALESCE(fk.query, 'SELECT ''null''::pg_catalog.jsonb'),
       root.oid, fk.confrelid
FROM (SELECT COALESCE(pg_catalog.pg_partition_root($1), $1)::pg_catalog.oid AS oid) root
LEFT JOIN LATERAL (
    SELECT pg_catalog.format(
        'SELECT COALESCE((SELECT pg_catalog.jsonb_build_object(%s) FROM %s p '
        'WHERE p.%I OPERATOR(%I.%s) ($1).%I), ''null''::pg_catalog.jsonb)',
        (SELECT pg_catalog.string_agg(
                    CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_attribute pa
                                      WHERE pa.attrelid OPERATOR(pg_catalog.=) fk.confrelid
                                        AND pa.attname OPERATOR(pg_catalog.=) c.name
                                        AND pa.attnum OPERATOR(pg_catalog.>) 0
                                        AND NOT pa.attisdropped)
                         THEN pg_catalog.format('%L, p.%I', c.name, c.name)
                         ELSE pg_catalog.format('%L, NULL', c.name) END,
                    ', ' ORDER BY c.n)
         FROM pg_catalog.unnest($3) WITH ORDINALITY AS c(name, n)),
        fk.confrelid::pg_catalog.regclass, parent_key.attname, op_schema.nspname, op.oprname,
        child_key.attname) AS query,
        fk.confrelid
    FROM pg_catalog.pg_constraint fk
    JOIN pg_catalog.pg_attribute child_key ON child_key.attrelid OPERATOR(pg_catalog.=) fk.conrelid
         AND child_key.attnum OPERATOR(pg_catalog.=) fk.conkey[1]
    JOIN pg_catalog.pg_attribute parent_key ON parent_key.attrelid OPERATOR(pg_catalog.=) fk.confrelid
         AND parent_key.attnum OPERATOR(pg_catalog.=) fk.confkey[1]
    JOIN pg_catalog.pg_operator op ON op.oid OPERATOR(pg_catalog.=) fk.conpfeqop[1]
    JOIN pg_catalog.pg_namespace op_schema ON op_schema.oid OPERATOR(pg_catalog.=) op.oprnamespace
    WHERE fk.conrelid OPERATOR(pg_catalog.=) root.oid
      AND fk.contype OPERATOR(pg_catalog.=) 'f'
      AND fk.conparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
      AND pg_catalog.cardinality(fk.conkey) OPERATOR(pg_catalog.=) 1
      AND child_key.attname OPERATOR(pg_catalog.=) $2
    ORDER BY fk.oid
    LIMIT 1) fk ON true";

/// A kept plan's key: the table written and its capture triggers' arguments.
type PlanKey = (pg_sys::Oid, Vec<CString>);

#[derive(Clone, Copy)]
struct KeptPlan {
    plan: pg_sys::SPIPlanPtr,
    parent: Option<pg_sys::Oid>,
}

thread_local! {
    static PLANS: RefCell<HashMap<PlanKey, KeptPlan>> = RefCell::new(HashMap::new());
    /// The tables the kept plans were made from.
    static WATCHED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// Relcache invalidations seen, of any table.
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
    static LISTENING: Cell<bool> = const { Cell::new(false) };
    /// Captures running in this backend, nested ones included.
    static CAPTURES_RUNNING: Cell<u32> = const { Cell::new(0) };
}

/// Marks a capture as running while it lives (see the module doc). Dropped on errors too: pgrx
/// unwinds through Rust frames before handing the error back to PostgreSQL.
pub(super) struct CaptureRunning;

impl CaptureRunning {
    pub(super) fn enter() -> CaptureRunning {
        CAPTURES_RUNNING.set(CAPTURES_RUNNING.get() + 1);
        CaptureRunning
    }
}

impl Drop for CaptureRunning {
    fn drop(&mut self) {
        CAPTURES_RUNNING.set(CAPTURES_RUNNING.get().saturating_sub(1));
    }
}

/// Relcache invalidation callback: only marks, as it may run in the middle of anything.
unsafe extern "C-unwind" fn forget_plans_of(_argument: pg_sys::Datum, relid: pg_sys::Oid) {
    INVALIDATIONS.set(INVALIDATIONS.get().wrapping_add(1));
    let watched = relid == pg_sys::InvalidOid
        || WATCHED.with(|watched| watched.try_borrow().map_or(true, |w| w.contains(&relid)));
    if watched {
        STALE.set(true);
    }
}

/// Frees the kept plans if they are stale and no outer capture may be using one; false when
/// they are stale and must stay.
unsafe fn free_stale_plans() -> bool {
    if !LISTENING.get() {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_plans_of), pg_sys::Datum::null());
        LISTENING.set(true);
    }
    if !STALE.get() {
        return true;
    }
    if CAPTURES_RUNNING.get() > 1 {
        return false;
    }
    let plans: Vec<_> =
        PLANS.with_borrow_mut(|plans| plans.drain().map(|(_, kept)| kept.plan).collect());
    WATCHED.with_borrow_mut(HashSet::clear);
    STALE.set(false);
    for plan in plans {
        pg_sys::SPI_freeplan(plan);
    }
    true
}

/// The most parent columns a capture trigger reads: what enrich() allows, also for a trigger
/// made by hand (jsonb_build_object takes at most 100 arguments).
const MOST_COLUMNS: usize = 20;

/// The parent row's chosen columns for each row of a statement, as the writer, all read in one
/// snapshot.
pub(super) struct ParentValues {
    plan: pg_sys::SPIPlanPtr,
    snapshot: pg_sys::Snapshot,
}

impl ParentValues {
    /// None for a table whose capture triggers name no parent columns (arguments: the key
    /// column, then the parent's columns).
    pub(super) unsafe fn prepare(
        relid: pg_sys::Oid,
        rowtype: pg_sys::Oid,
        arguments: &[CString],
    ) -> Result<Option<ParentValues>, CaptureError> {
        let Some((key_column, columns)) = arguments.split_first() else {
            return Ok(None);
        };
        if columns.is_empty() {
            return Ok(None);
        }
        let columns = &columns[..columns.len().min(MOST_COLUMNS)];
        let plan = ParentValues::plan(relid, rowtype, key_column, columns, arguments)?;
        // the statement's changes and those committed before now, the same for all its rows
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let snapshot = pg_sys::GetActiveSnapshot();
        Ok(Some(ParentValues { plan, snapshot }))
    }

    /// Ends the statement's snapshot (an error ends it with the (sub)transaction instead).
    pub(super) unsafe fn finish(self) {
        pg_sys::PopActiveSnapshot();
    }

    /// The kept plan, made anew when stale, or a plan of this statement alone.
    unsafe fn plan(
        relid: pg_sys::Oid,
        rowtype: pg_sys::Oid,
        key_column: &CStr,
        columns: &[CString],
        arguments: &[CString],
    ) -> Result<pg_sys::SPIPlanPtr, CaptureError> {
        let key = (relid, arguments.to_vec());
        if let Some(kept) = PLANS.with_borrow(|plans| plans.get(&key).copied()) {
            // the lock the plan's run would take, taken first: a rename of a parent column
            // committed meanwhile is seen now, and none can commit before this transaction ends
            lock_parent(kept.parent);
            // a renamed schema resets every plan without a relcache invalidation
            if !pg_sys::SPI_plan_is_valid(kept.plan) {
                STALE.set(true);
            }
        }
        let may_keep = free_stale_plans();
        if let Some(kept) = PLANS.with_borrow(|plans| plans.get(&key).copied()) {
            if may_keep {
                return Ok(kept.plan);
            }
        }
        let query = ParentQuery::read(relid, key_column, columns)?;
        let mut row_type = [rowtype];
        let plan = pg_sys::SPI_prepare(query.text.as_ptr(), 1, row_type.as_mut_ptr());
        if plan.is_null() {
            return Err(CaptureError::Spi {
                call: "SPI_prepare (parent values)",
                code: pg_sys::SPI_result,
            });
        }
        // kept for later statements, or else this one's alone (freed with SPI's memory at its end)
        if may_keep {
            spi_status(
                "SPI_keepplan (parent values)",
                pg_sys::SPI_keepplan(plan),
                0,
            )?;
            let parent = query.parent;
            PLANS.with_borrow_mut(|plans| plans.insert(key, KeptPlan { plan, parent }));
            WATCHED.with_borrow_mut(|watched| {
                watched.extend(
                    [Some(relid), Some(query.root), parent]
                        .into_iter()
                        .flatten(),
                )
            });
        }
        Ok(plan)
    }

    /// The values for one row (a composite datum of the table's row type), copied into
    /// `outer`. Keeps the caller's memory context: SPI returns in its own.
    pub(super) unsafe fn of(
        &mut self,
        row: pg_sys::Datum,
        outer: pg_sys::MemoryContext,
    ) -> Result<pg_sys::Datum, CaptureError> {
        let here = pg_sys::CurrentMemoryContext;
        let mut values = [row];
        let status = pg_sys::SPI_execute_snapshot(
            self.plan,
            values.as_mut_ptr(),
            std::ptr::null(),
            self.snapshot,
            std::ptr::null_mut(),
            true,
            false,
            1,
        );
        spi_status(
            "SPI_execute_snapshot (parent values)",
            status,
            pg_sys::SPI_OK_SELECT,
        )?;
        let tuptable = pg_sys::SPI_tuptable;
        let mut is_null = false;
        let value = match pg_sys::SPI_processed {
            1 => pg_sys::SPI_getbinval(*(*tuptable).vals, (*tuptable).tupdesc, 1, &mut is_null),
            rows => return Err(CaptureError::ParentValues(rows)),
        };
        if is_null {
            return Err(CaptureError::ParentValues(0));
        }
        let kept = copy_into(outer, value);
        pg_sys::SPI_freetuptable(tuptable);
        pg_sys::MemoryContextSwitchTo(here);
        Ok(kept)
    }
}

unsafe fn lock_parent(parent: Option<pg_sys::Oid>) {
    if let Some(parent) = parent {
        pg_sys::LockRelationOid(parent, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
}

/// The parent query's text, and the tables it was made from.
struct ParentQuery {
    text: CString,
    root: pg_sys::Oid,
    parent: Option<pg_sys::Oid>,
}

impl ParentQuery {
    /// Read from the catalogs with the parent locked, as a kept plan's run locks it: read again
    /// if taking the lock brought news of changed tables (a parent column renamed meanwhile).
    unsafe fn read(
        relid: pg_sys::Oid,
        key_column: &CStr,
        columns: &[CString],
    ) -> Result<ParentQuery, CaptureError> {
        let mut tries = 0;
        loop {
            let seen = INVALIDATIONS.get();
            let query = ParentQuery::read_unlocked(relid, key_column, columns)?;
            lock_parent(query.parent);
            tries += 1;
            if INVALIDATIONS.get() == seen || tries == 3 {
                return Ok(query);
            }
        }
    }

    unsafe fn read_unlocked(
        relid: pg_sys::Oid,
        key_column: &CStr,
        columns: &[CString],
    ) -> Result<ParentQuery, CaptureError> {
        let mut texts: Vec<pg_sys::Datum> = columns.iter().map(|c| text_datum(c)).collect();
        let mut types = [pg_sys::REGCLASSOID, pg_sys::TEXTOID, pg_sys::TEXTARRAYOID];
        let mut values = [
            pg_sys::Datum::from(relid),
            text_datum(key_column),
            varlena_array(&mut texts, pg_sys::TEXTOID),
        ];
        // the catalogs as they are now, as parsing the query will see them (syscache), not as
        // the statement's snapshot saw them: a rename committed since must not be missed
        pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
        let status = pg_sys::SPI_execute_with_args(
            PARENT_QUERY.as_ptr(),
            3,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            std::ptr::null(),
            true,
            1,
        );
        pg_sys::PopActiveSnapshot();
        spi_status(
            "SPI_execute_with_args (parent query)",
            status,
            pg_sys::SPI_OK_SELECT,
        )?;
        let tuptable = pg_sys::SPI_tuptable;
        let (row, tupdesc) = (*(*tuptable).vals, (*tuptable).tupdesc);
        let oid_in = |column| {
            let mut is_null = false;
            let value = pg_sys::SPI_getbinval(row, tupdesc, column, &mut is_null);
            (!is_null).then(|| pg_sys::Oid::from(value.value() as u32))
        };
        let query = ParentQuery {
            text: CStr::from_ptr(pg_sys::SPI_getvalue(row, tupdesc, 1)).to_owned(),
            root: oid_in(2).unwrap_or(relid),
            parent: oid_in(3),
        };
        pg_sys::SPI_freetuptable(tuptable);
        Ok(query)
    }
}

unsafe fn text_datum(value: &CStr) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text(value.as_ptr()))
}
