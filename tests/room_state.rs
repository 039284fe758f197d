//! The state tracker (DAG walk + ruma state resolution) against Synapse's own answer: for every
//! dumped room, the state it computes after the forward extremities equals Synapse's current
//! state — including the forked 5,000-event room.

mod common;

use ruma::OwnedEventId;
use transition_matrix::archive::room::{PduReader, RoomMeta, EVENTS, OUTLIERS};
use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::matrix::pdu;
use transition_matrix::matrix::state::{StateEvent, StateTracker};

#[test]
fn computed_current_state_equals_synapses_in_every_room() {
    let (root, _) = common::reference_archive();
    let archive = Archive::open(root).unwrap();
    let mut merges = 0;
    for room_id in archive.room_ids().unwrap() {
        let dir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&dir.join("room.json")).unwrap();
        if meta.current_state_source != "synapse" {
            // Synapse forgot this room's state (no local member): the dump computed it with this
            // same tracker, so there is nothing independent to compare against. It must hold the
            // create event, though.
            assert!(
                meta.current_state.iter().any(|s| s.kind == "m.room.create"),
                "{room_id}"
            );
            continue;
        }
        let rules = pdu::rules_for(&meta.version).unwrap();
        let mut tracker = StateTracker::new(rules);
        for line in PduReader::open(&dir.join(OUTLIERS)).unwrap() {
            let line = line.unwrap();
            tracker.add_known(StateEvent::from_pdu(&line.event_id, &line.pdu).unwrap());
        }
        for line in PduReader::open(&dir.join(EVENTS)).unwrap() {
            let line = line.unwrap();
            tracker
                .push(StateEvent::from_pdu(&line.event_id, &line.pdu).unwrap())
                .unwrap();
        }
        let ext: Vec<OwnedEventId> = meta
            .forward_extremities
            .iter()
            .map(|e| e.as_str().try_into().unwrap())
            .collect();
        let state = tracker.current_state(&ext).unwrap();
        let mut got: Vec<(String, String, String)> = state
            .iter()
            .map(|((t, k), e)| (t.to_string(), k.clone(), e.to_string()))
            .collect();
        got.sort();
        let want: Vec<(String, String, String)> = meta
            .current_state
            .iter()
            .map(|s| (s.kind.clone(), s.state_key.clone(), s.event_id.clone()))
            .collect();
        assert_eq!(got, want, "current state of {room_id}");
        merges += tracker.resolutions;
    }
    assert!(
        merges > 0,
        "the forked room must exercise real state resolution"
    );
}
