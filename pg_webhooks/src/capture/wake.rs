//! The wake: an idle relay NOTIFYed of new events, as webhooks._wake_relays() does for emit()
//! (sql/30_capture.sql says why only an idle one, and never where transactions may be
//! prepared).
//!
//! Whether webhooks.relays lists an idle relay is kept by each backend: reading the table and
//! its index cost every captured statement about 12k instructions, more than the event's
//! payload (BENCHMARKS.md, "The wake check and the events layout kept per backend"). Relays change their row when they
//! go idle or busy, arrive, leave or send a heartbeat; each change invalidates the table
//! (capture/kept.rs), so writers read it again from their next statement. PostgreSQL makes a
//! commit visible a moment before it sends its invalidations: a writer checking in between
//! keeps the old answer, which a relay's looks after going idle (sql/30_capture.sql) cover as
//! they cover a writer that checked just before the flip. Invalidations cost every backend a
//! reread: only relays (and the heartbeat of an idle one, every --poll-interval) send them.

use super::kept::{catch_up, changes_are_announced, Read};
use super::outbox::{first_row, relation_oid};
use super::CaptureError;
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CStr;

/// The triggers that invalidate webhooks.relays for every change of its rows.
const ANNOUNCED_BY: [&CStr; 2] = [c"relays_reach_writers", c"relays_reach_writers_on_truncate"];

#[derive(Clone, Copy)]
struct Kept {
    /// webhooks.relays: an invalidation of it forgets.
    relays_table: pg_sys::Oid,
    /// The extension's schema: kept under another (the extension made anew), it is not used.
    namespace: pg_sys::Oid,
    some_relay_idle: bool,
}

thread_local! {
    static KEPT: Cell<Option<Kept>> = const { Cell::new(None) };
    /// max_prepared_transactions is set at server start.
    static PREPARED_TRANSACTIONS_POSSIBLE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// NOTIFY an idle relay, if one is waiting for it.
pub(super) unsafe fn wake_an_idle_relay(namespace: pg_sys::Oid) -> Result<(), CaptureError> {
    if prepared_transactions_possible() || !some_relay_idle(namespace)? {
        return Ok(());
    }
    pg_sys::OidFunctionCall2Coll(
        pg_sys::Oid::from(pg_sys::F_PG_NOTIFY),
        pg_sys::InvalidOid,
        pg_sys::Datum::from(pg_sys::cstring_to_text(c"webhooks_wakeup".as_ptr())),
        pg_sys::Datum::from(pg_sys::cstring_to_text(c"".as_ptr())),
    );
    Ok(())
}

/// PREPARE TRANSACTION refuses a transaction that notified: there, relays poll.
unsafe fn prepared_transactions_possible() -> bool {
    if let Some(possible) = PREPARED_TRANSACTIONS_POSSIBLE.get() {
        return possible;
    }
    let setting = pg_sys::GetConfigOption(c"max_prepared_transactions".as_ptr(), false, false);
    let possible = setting.is_null() || CStr::from_ptr(setting) != c"0";
    PREPARED_TRANSACTIONS_POSSIBLE.set(Some(possible));
    possible
}

unsafe fn some_relay_idle(namespace: pg_sys::Oid) -> Result<bool, CaptureError> {
    // again after the append, which may have run long (and DBA triggers of webhooks.events):
    // a relay that went idle meanwhile is woken, as a read here would wake it
    catch_up();
    if let Some(kept) = KEPT.get().filter(|kept| kept.namespace == namespace) {
        return Ok(kept.some_relay_idle);
    }
    let read_begun = Read::begin();
    let relays_table = relation_oid(namespace, c"relays")?;
    let announced = changes_are_announced(namespace, c"relays", ANNOUNCED_BY)?;
    let some_relay_idle = first_row(namespace, c"relays", c"relays_idle_idx", None, |row| {
        Ok(row.value(c"idle")?.filter(|idle| idle.value() != 0))
    })?
    .is_some();
    if announced && read_begun.may_be_kept() {
        KEPT.set(Some(Kept {
            relays_table,
            namespace,
            some_relay_idle,
        }));
    }
    Ok(some_relay_idle)
}

/// Forgets what an invalidation of `relid` may have changed (InvalidOid: everything).
pub(super) fn forget(relid: pg_sys::Oid) {
    if KEPT
        .get()
        .is_some_and(|kept| relid == pg_sys::InvalidOid || relid == kept.relays_table)
    {
        KEPT.set(None);
    }
}
