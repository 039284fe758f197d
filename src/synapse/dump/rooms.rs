//! Rooms: metadata and current state from the admin API; the full history through self-signed
//! federation `/backfill` (rooms with a local member) or admin `/messages?raw` (rooms without);
//! the timeline ordered as Synapse orders it; written atomically as one directory per room.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::collect::Collector;
use super::{for_each_item, Ctx, DumpSummary, Item};
use crate::archive::room::{self, PduLine, RoomMeta, StateEntry};
use crate::archive::{fsutil, Entry, ItemKind};
use crate::error::{Error, Result};
use crate::matrix::pdu;
use crate::matrix::state::{StateEvent, StateTracker};
use crate::synapse::federation::BACKFILL_STARTS;

pub(super) async fn dump(ctx: &Ctx<'_>, summary: &mut DumpSummary) -> Result<()> {
    let mut ids: Vec<String> = ctx
        .source
        .admin
        .list_rooms()
        .await?
        .iter()
        .filter_map(|r| r.get("room_id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    ids.sort();
    // Which rooms Synapse has: the proxy answers for any other room at once (Conduit's own).
    fsutil::write_json(&ctx.archive.source_rooms_path(), &ids, false)?;
    if let Some(only) = &ctx.opts.only_room {
        ids.retain(|r| r == only);
        if ids.is_empty() {
            return Err(Error::Config(format!("Synapse does not know room {only}")));
        }
    }
    let items: Vec<Item<()>> = ids
        .into_iter()
        .map(|id| Item {
            id,
            weight: 1,
            data: (),
        })
        .collect();
    let bar = ctx.progress.bar("rooms", items.len() as u64);
    let msg = bar.clone();
    let work = |id: String, ()| {
        let msg = msg.clone();
        async move {
            let n = dump_room(ctx, &id).await?;
            msg.set_message(format!("{id}: {n} events"));
            Ok(())
        }
    };
    for_each_item(ctx, ItemKind::Room, items, bar, work, summary).await;
    Ok(())
}

/// Dumps one room; returns its number of timeline events.
async fn dump_room(ctx: &Ctx<'_>, room_id: &str) -> Result<u64> {
    let src = ctx.source;
    let admin = &src.admin;
    let (details, state, extremities) = tokio::try_join!(
        admin.room(room_id),
        admin.room_state(room_id),
        admin.forward_extremities(room_id)
    )?;
    let version = details
        .get("version")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            state
                .iter()
                .find(|e| e["type"] == "m.room.create")
                .map(|e| {
                    e["content"]["room_version"]
                        .as_str()
                        .unwrap_or("1")
                        .to_owned()
                })
        })
        .unwrap_or_else(|| "1".to_owned());
    let rules = pdu::rules_for(&version).ok_or_else(|| {
        Error::Config(format!(
            "room {room_id} has room version {version}, which is not supported"
        ))
    })?;
    let keys = src
        .published
        .as_ref()
        .map(|p| p.key_map())
        .unwrap_or_default();
    let rules_for_room = rules.clone();
    let mut col = Collector::new(room_id, rules, &src.server_name, keys);
    let t_history = std::time::Instant::now();
    let joined_local = details
        .get("joined_local_members")
        .and_then(Value::as_u64)
        .unwrap_or(0);

    // Synapse's own order and aliases come from its database while the history streams in.
    let from_db = async {
        match &src.db {
            Some(db) => Ok::<_, Error>(Some((
                db.room_event_order(room_id).await?,
                db.room_aliases(room_id).await?,
            ))),
            None => Ok(None),
        }
    };
    let (history, from_db) = tokio::join!(
        history(ctx, room_id, joined_local, &extremities, &mut col),
        from_db
    );
    let (history_source, history_gaps) = history?;
    let (db_order, db_aliases) = match from_db? {
        Some((order, aliases)) => (Some(order), Some(aliases)),
        None => (None, None),
    };

    // State and auth events the history did not contain become outliers.
    let mut current_state = state_entries(&state);
    let mut missing: BTreeSet<String> = current_state.iter().map(|s| s.event_id.clone()).collect();
    for ev in col.events.values() {
        missing.extend(pdu::event_refs(ev, "auth_events"));
    }
    missing.retain(|id| !col.has(id));
    for id in missing {
        let fetched = match (&src.federation, history_source) {
            (Some(fed), "federation-backfill") => fed.event(&id).await,
            _ => admin.fetch_event(&id).await,
        };
        match fetched.and_then(|v| pdu::from_value(v).map_err(|e| Error::malformed("PDU", e))) {
            Ok(mut obj) => {
                pdu::strip_client_raw(&mut obj, col.rules());
                col.add_outlier(obj, Some(&id));
            }
            Err(e) => col
                .errors
                .push(format!("{id} (needed for state or auth): {e}")),
        }
    }
    let t_checks = std::time::Instant::now();
    let checked = col.finish_checks().await;
    let t_order = std::time::Instant::now();
    // The timeline is what the history walk reached; the rest are outliers.
    let timeline: BTreeSet<String> = col
        .events
        .keys()
        .filter(|id| !col.outliers.contains(*id))
        .cloned()
        .collect();

    let (order_ids, order_source) = order_timeline(&col, &timeline, db_order.as_deref());
    let lines: Vec<PduLine> = order_ids
        .into_iter()
        .filter_map(|id| col.events.remove(&id).map(|pdu| PduLine::new(id, pdu)))
        .collect();
    // What is left are the outliers.
    let mut outliers: Vec<PduLine> = col
        .events
        .drain()
        .map(|(event_id, pdu)| PduLine::new(event_id, pdu))
        .collect();
    // Synapse forgets the current state of rooms it has left; compute it from the DAG.
    let current_state_source = if current_state.is_empty() {
        current_state = computed_state(
            &rules_for_room,
            &lines,
            &outliers,
            &extremities,
            &mut col.errors,
        );
        "computed"
    } else {
        "synapse"
    };
    outliers.sort_by(|a, b| a.event_id.cmp(&b.event_id));

    let meta = RoomMeta {
        room_id: room_id.to_owned(),
        version,
        creator: details
            .get("creator")
            .and_then(Value::as_str)
            .map(str::to_owned),
        name: state_content(&state, "m.room.name", "name"),
        canonical_alias: state_content(&state, "m.room.canonical_alias", "alias"),
        aliases: match db_aliases {
            Some(a) => a,
            None => aliases(ctx, room_id, &state).await,
        },
        published: details
            .get("public")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        room_type: details
            .get("room_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        joined_local_members: joined_local,
        current_state,
        current_state_source: current_state_source.to_owned(),
        forward_extremities: extremities,
        events: lines.len() as u64,
        outliers: outliers.len() as u64,
        history_source: history_source.to_owned(),
        order_source: order_source.to_owned(),
        history_gaps,
        pruned_events: checked.pruned,
        foreign_events: checked.foreign,
    };
    if let Some(db_order) = &db_order {
        let in_db = db_order.len();
        let have = lines.len() + outliers.len();
        if in_db != have {
            col.errors.push(format!(
                "Synapse's database has {in_db} events, the archive {have}"
            ));
        }
    }
    let t_write = std::time::Instant::now();
    write_room(ctx, &meta, &lines, &outliers, col.errors)?;
    tracing::debug!(
        room = room_id,
        events = meta.events,
        history_ms = (t_checks - t_history).as_millis() as u64,
        checks_wait_ms = (t_order - t_checks).as_millis() as u64,
        order_ms = (t_write - t_order).as_millis() as u64,
        write_ms = t_write.elapsed().as_millis() as u64,
        "room dumped"
    );
    Ok(meta.events)
}

/// Reads the whole history: over federation when a local member is joined, else (or when
/// Synapse left the room meanwhile) through the admin API. Returns its source and any gaps.
async fn history(
    ctx: &Ctx<'_>,
    room_id: &str,
    joined_local: u64,
    extremities: &[String],
    col: &mut Collector,
) -> Result<(&'static str, Vec<String>)> {
    if joined_local > 0 && ctx.source.federation.is_some() {
        match backfill_walk(ctx, room_id, extremities, col).await {
            Ok(gaps) => return Ok(("federation-backfill", gaps)),
            // The last local member may have left since the admin API answered.
            Err(e) if e.errcode() == Some("M_FORBIDDEN") => {}
            Err(e) => return Err(e),
        }
    }
    admin_messages(ctx, room_id, col).await?;
    Ok(("admin-messages", Vec::new()))
}

/// Walks `/backfill` from the forward extremities through every prev event not yet fetched,
/// deepest first, until the create event. Forked DAGs are followed branch by branch.
/// Returns the prev events Synapse does not have (history it never held, e.g. from before it
/// joined a federated room).
async fn backfill_walk(
    ctx: &Ctx<'_>,
    room_id: &str,
    extremities: &[String],
    col: &mut Collector,
) -> Result<Vec<String>> {
    let fed = ctx.source.federation()?;
    // Wanted event id → depth hint (its child's depth - 1), so batches go deepest first.
    let mut wanted: HashMap<String, i64> =
        extremities.iter().map(|e| (e.clone(), i64::MAX)).collect();
    let mut asked: HashMap<String, u32> = HashMap::new();
    let mut gaps = Vec::new();
    while !wanted.is_empty() {
        let mut batch: Vec<(&String, &i64)> = wanted.iter().collect();
        batch.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let batch: Vec<String> = batch
            .into_iter()
            .take(BACKFILL_STARTS)
            .map(|(id, _)| id.clone())
            .collect();
        let pdus = fed.backfill(room_id, &batch).await?;
        for raw in pdus {
            let mut obj = match pdu::from_value(raw) {
                Ok(o) => o,
                Err(e) => {
                    col.errors.push(format!("a PDU from /backfill: {e}"));
                    continue;
                }
            };
            obj.remove("unsigned");
            let depth = pdu::int_field(&obj, "depth").unwrap_or(0);
            let prevs = pdu::event_refs(&obj, "prev_events");
            if let Some(id) = col.add(obj, None) {
                wanted.remove(&id);
                for p in prevs {
                    if !col.has(&p) {
                        wanted.entry(p).or_insert(depth - 1);
                    }
                }
            }
        }
        col.check_pending();
        for id in batch {
            if col.has(&id) {
                wanted.remove(&id);
                continue;
            }
            let n = asked.entry(id.clone()).or_default();
            *n += 1;
            if *n >= 3 {
                wanted.remove(&id);
                gaps.push(id);
            }
        }
    }
    // The state and auth chain at each forward extremity: complete even where history has gaps.
    for ex in extremities {
        let (state, auth_chain) = fed.state(room_id, ex).await?;
        for raw in state.into_iter().chain(auth_chain) {
            match pdu::from_value(raw) {
                Ok(mut obj) => {
                    obj.remove("unsigned");
                    col.add_outlier(obj, None);
                }
                Err(e) => col.errors.push(format!("a PDU from /state: {e}")),
            }
        }
    }
    col.check_pending();
    gaps.sort();
    Ok(gaps)
}

/// Pages admin `/messages?raw` forwards from the start of the room.
async fn admin_messages(ctx: &Ctx<'_>, room_id: &str, col: &mut Collector) -> Result<()> {
    let mut from: Option<String> = None;
    loop {
        let (chunk, end) = ctx
            .source
            .admin
            .messages_raw(room_id, from.as_deref())
            .await?;
        let mut added = 0;
        for raw in chunk {
            let mut obj = match pdu::from_value(raw) {
                Ok(o) => o,
                Err(e) => {
                    col.errors.push(format!("a PDU from /messages: {e}"));
                    continue;
                }
            };
            let claimed = pdu::strip_client_raw(&mut obj, col.rules());
            if col.add(obj, claimed.as_deref()).is_some() {
                added += 1;
            }
        }
        col.check_pending();
        // A page with nothing new is the end, whatever token came with it.
        match end {
            Some(end) if added > 0 && from.as_deref() != Some(end.as_str()) => from = Some(end),
            _ => return Ok(()),
        }
    }
}

/// The timeline in Synapse's order: exact from its database when we have it, otherwise by
/// (depth, origin_server_ts, event id), which is what Synapse's ordering reduces to for events
/// created locally in sequence.
fn order_timeline(
    col: &Collector,
    timeline: &BTreeSet<String>,
    db_order: Option<&[String]>,
) -> (Vec<String>, &'static str) {
    let mut by_depth: Vec<&String> = timeline.iter().collect();
    by_depth.sort_by_cached_key(|id| {
        let p = &col.events[*id];
        let depth = pdu::int_field(p, "depth").unwrap_or(0);
        (
            depth,
            pdu::int_field(p, "origin_server_ts").unwrap_or(0),
            *id,
        )
    });
    let Some(db_order) = db_order else {
        return (by_depth.into_iter().cloned().collect(), "depth");
    };
    let mut seen = BTreeSet::new();
    let mut order: Vec<String> = Vec::with_capacity(timeline.len());
    for id in db_order {
        if timeline.contains(id) && seen.insert(id) {
            order.push(id.clone());
        }
    }
    // Anything the database did not list (it should not happen) keeps the depth order, last.
    order.extend(
        by_depth
            .into_iter()
            .filter(|id| !seen.contains(*id))
            .cloned(),
    );
    (order, "synapse-db")
}

/// The current state from the events themselves (state resolution at forks).
fn computed_state(
    rules: &ruma::room_version_rules::RoomVersionRules,
    lines: &[PduLine],
    outliers: &[PduLine],
    extremities: &[String],
    errors: &mut Vec<String>,
) -> Vec<StateEntry> {
    let mut tracker = StateTracker::new(rules.clone());
    let result = (|| -> std::result::Result<_, String> {
        for l in outliers {
            tracker
                .add_known(StateEvent::from_pdu(&l.event_id, &l.pdu).map_err(|e| e.to_string())?);
        }
        for l in lines {
            tracker
                .push(StateEvent::from_pdu(&l.event_id, &l.pdu).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let ext: Vec<ruma::OwnedEventId> = extremities
            .iter()
            .filter_map(|e| e.as_str().try_into().ok())
            .collect();
        tracker.current_state(&ext).map_err(|e| e.to_string())
    })();
    match result {
        Ok(state) => {
            let mut out: Vec<StateEntry> = state
                .iter()
                .map(|((t, k), e)| StateEntry {
                    kind: t.to_string(),
                    state_key: k.clone(),
                    event_id: e.to_string(),
                })
                .collect();
            out.sort();
            out
        }
        Err(e) => {
            errors.push(format!("cannot compute the current state: {e}"));
            Vec::new()
        }
    }
}

fn state_entries(state: &[Value]) -> Vec<StateEntry> {
    let mut out: Vec<StateEntry> = state
        .iter()
        .filter_map(|e| {
            Some(StateEntry {
                kind: e.get("type")?.as_str()?.to_owned(),
                state_key: e.get("state_key")?.as_str()?.to_owned(),
                event_id: e.get("event_id")?.as_str()?.to_owned(),
            })
        })
        .collect();
    out.sort();
    out
}

fn state_content(state: &[Value], kind: &str, field: &str) -> Option<String> {
    state
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == "")
        .and_then(|e| e["content"][field].as_str())
        .map(str::to_owned)
}

/// Local aliases without the database: the client API, else what the room's canonical alias
/// event names.
async fn aliases(ctx: &Ctx<'_>, room_id: &str, state: &[Value]) -> Vec<String> {
    if let Ok(mut a) = ctx.source.admin.room_aliases(room_id).await {
        a.sort();
        return a;
    }
    let suffix = format!(":{}", ctx.source.server_name);
    let mut out: BTreeSet<String> = BTreeSet::new();
    if let Some(e) = state.iter().find(|e| e["type"] == "m.room.canonical_alias") {
        out.extend(e["content"]["alias"].as_str().map(str::to_owned));
        if let Some(alt) = e["content"]["alt_aliases"].as_array() {
            out.extend(alt.iter().filter_map(|a| a.as_str().map(str::to_owned)));
        }
    }
    out.into_iter().filter(|a| a.ends_with(&suffix)).collect()
}

/// Writes the room directory next to its final place, then renames it in, then records it.
fn write_room(
    ctx: &Ctx<'_>,
    meta: &RoomMeta,
    lines: &[PduLine],
    outliers: &[PduLine],
    errors: Vec<String>,
) -> Result<()> {
    let dir = ctx.archive.room_dir(&meta.room_id);
    let tmp = fsutil::tmp_path(&dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("cannot remove", &tmp, e))?;
    }
    fsutil::create_dir_all(&tmp)?;
    fsutil::write_json(&tmp.join(room::META), meta, false)?;
    room::write_pdus(&tmp.join(room::EVENTS), lines)?;
    room::write_pdus(&tmp.join(room::OUTLIERS), outliers)?;
    let mut files = BTreeMap::new();
    for name in [room::META, room::EVENTS, room::OUTLIERS] {
        files.insert(
            ctx.archive.relative(&dir.join(name)),
            fsutil::sha256_file(&tmp.join(name))?,
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("cannot replace", &dir, e))?;
    }
    fsutil::rename(&tmp, &dir)?;
    ctx.checkpoint.record(Entry {
        kind: ItemKind::Room,
        id: meta.room_id.clone(),
        files,
        counts: BTreeMap::from([
            ("events".into(), meta.events),
            ("outliers".into(), meta.outliers),
        ]),
        errors,
    })
}
