//! What each backend keeps between statements (capture/tracking.rs: what webhooks.tracked says
//! of the tables it writes; capture/wake.rs: whether webhooks.relays lists an idle relay;
//! capture/outbox.rs: the layout of webhooks.events), and how PostgreSQL's invalidations make it
//! forget.
//!
//! The layout of webhooks.events changes only by DDL, which invalidates the table by itself. Row
//! changes do not: the triggers `tracking_reaches_writers` and `relays_reach_writers`
//! (sql/30_capture.sql) invalidate their table's relcache entry for every change of its rows,
//! changes by hand included. Invalidations are read before each statement's capture, so a
//! change another session committed applies from a writer's next statement after its commit,
//! also inside a transaction already under way (the writer's own change at once). While a
//! table's triggers are not all enabled ALWAYS, nothing of it is kept.
//!
//! Each backend that writes a tracked table takes one of PostgreSQL's relcache callback slots
//! (ten per backend in all, shared with other extensions; none left is a FATAL error).

use super::outbox::open;
use super::{outbox, tracking, wake, CaptureError};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::CStr;

thread_local! {
    /// Counts relcache invalidations, so that a read that one overtook is not kept.
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
    static LISTENING: Cell<bool> = const { Cell::new(false) };
}

/// Applies the invalidations other sessions' commits sent: a kept answer takes no lock on the
/// table it came from, which would read them otherwise.
pub(super) unsafe fn catch_up() {
    pg_sys::AcceptInvalidationMessages();
}

/// A read of something to keep. Begun before the read, it tells after it whether an
/// invalidation processed meanwhile may be for a change the read did not see.
pub(super) struct Read {
    invalidations_before: u64,
}

impl Read {
    pub(super) unsafe fn begin() -> Self {
        listen_for_invalidations();
        Read {
            invalidations_before: INVALIDATIONS.get(),
        }
    }

    pub(super) fn may_be_kept(&self) -> bool {
        INVALIDATIONS.get() == self.invalidations_before
    }
}

/// Whether every change of `table` invalidates it: both of its triggers that do so are there
/// and fire ALWAYS. Disabled, turned to ORIGIN by a restore's ENABLE TRIGGER (then changes a
/// replica applies pass unseen), or missing (an older schema under this library, before ALTER
/// EXTENSION UPDATE), nothing may be kept. Changing them invalidates the table, which forgets.
pub(super) unsafe fn changes_are_announced(
    namespace: pg_sys::Oid,
    table: &'static CStr,
    triggers: [&CStr; 2],
) -> Result<bool, CaptureError> {
    let relation = open(namespace, table, pg_sys::AccessShareLock)?;
    let trigdesc = (*relation).trigdesc;
    let firing_always = |name: &CStr| {
        !trigdesc.is_null()
            && (0..usize::try_from((*trigdesc).numtriggers).unwrap_or_default()).any(|i| {
                let trigger = &*(*trigdesc).triggers.add(i);
                CStr::from_ptr(trigger.tgname) == name
                    && trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS
            })
    };
    let announced = triggers.into_iter().all(firing_always);
    pg_sys::table_close(relation, pg_sys::AccessShareLock as i32);
    Ok(announced)
}

/// Registers `forget` once per backend, when it first keeps something: a backend that never
/// writes a tracked table takes none of PostgreSQL's ten relcache callback slots.
unsafe fn listen_for_invalidations() {
    if !LISTENING.replace(true) {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0));
    }
}

/// The relcache callback: InvalidOid is a reset of every entry (the backend fell behind on
/// invalidations). Runs inside PostgreSQL's invalidation processing, which never happens while
/// something kept is borrowed (no borrow spans a call into PostgreSQL).
#[pg_guard]
unsafe extern "C-unwind" fn forget(_argument: pg_sys::Datum, relid: pg_sys::Oid) {
    INVALIDATIONS.set(INVALIDATIONS.get().wrapping_add(1));
    tracking::forget(relid);
    wake::forget(relid);
    outbox::forget(relid);
}

/// The triggers `*_reach_writers` on webhooks.tracked and webhooks.relays: after any change of
/// the table's rows (TRUNCATE included), an invalidation of it, which every backend's `forget`
/// reads.
#[pg_trigger(sql = false)]
fn announce_change<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    // SAFETY: called as a trigger, so its relation is open for the whole call
    unsafe { pg_sys::CacheInvalidateRelcache(trigger.trigger_data().tg_relation) };
    Ok(None)
}
