//! `mattermost export assets|memberships|messages|all`: the import in steps an admin can run
//! (and re-run) one at a time, each recorded in the archive's checkpoint:
//!
//! - **assets**: users, their pictures, custom emoji, teams as spaces; `mapping/users.json` and
//!   `mapping/rooms.json` (Mattermost id → Matrix id).
//! - **memberships**: who is in which room now, and how much join/leave history Mattermost
//!   kept (`mapping/memberships.json`). The membership *events* are forged with the messages:
//!   a room is one timeline, and a join must come before the first message it allows.
//! - **messages**: every channel's history (posts, threads, files, reactions, edits, and the
//!   membership events), then the users' records and `manifest.json`: the archive is complete.
//!
//! Every step skips what the archive already holds, so a re-run adds nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::ValueEnum;

use transition_matrix::archive::user::UserRecord;
use transition_matrix::archive::{fsutil, Archive, Checkpoint, Entry, ItemKind};
use transition_matrix::conduit::store::Backend;
use transition_matrix::import::forge::{ForgeOptions, ForgeSummary, Forger};
use transition_matrix::import::model::{Media, Room, RoomKind, User};
use transition_matrix::import::passwords;
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::mattermost::db::{channels_at_once, MattermostDb};
use transition_matrix::mattermost::export;
use transition_matrix::mattermost::map::{room_id, workspace, MapOptions, Mapper};
use transition_matrix::mattermost::mapping;
use transition_matrix::mattermost::rows::{MmChannel, Snapshot};
use transition_matrix::progress::Progress;

use super::channels::{self, ChannelDone, Readers, RemoteFiles};
use super::source::{connect_ssh, fetch_remote_files, meta_paths, open_source};
use super::{map_options, ConduitWriter, ForgeArgs};

/// One export step, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    Assets,
    Memberships,
    Messages,
    All,
}

impl Step {
    pub(super) fn runs(self, step: Step) -> bool {
        self == Step::All || self == step
    }

    fn id(self) -> &'static str {
        match self {
            Step::Assets => "assets",
            Step::Memberships => "memberships",
            Step::Messages => "messages",
            Step::All => "all",
        }
    }
}

/// Where the rooms go as they are forged (`mattermost import --conduit-db`).
pub struct Target {
    pub database: PathBuf,
    pub backend: Backend,
}

/// Runs `step` into the archive; `Some` summary once the messages step ran (the archive is
/// complete then). With `target`, a writer writes each room as it is forged, returned in
/// `writer` for the caller to wait on.
pub async fn run(
    a: &ForgeArgs,
    archive: &Archive,
    key: &ServerKey,
    step: Step,
    target: Option<Target>,
    writer: &mut Option<ConduitWriter>,
) -> Result<Option<ForgeSummary>> {
    let run = Run {
        a,
        archive,
        key,
        options: ForgeOptions {
            server_name: a.server_name.clone(),
            room_version: a.room_version.clone(),
            ids_in_memory: a.ids_in_memory as usize,
        },
        step,
    };
    match &a.source.export {
        Some(zip) => run.export_zip(zip, target, writer),
        None => run.export_database(target, writer).await,
    }
}

/// One run of steps: what every step reads.
struct Run<'a> {
    a: &'a ForgeArgs,
    archive: &'a Archive,
    key: &'a ServerKey,
    options: ForgeOptions,
    step: Step,
}

/// What the workspace gives the first steps.
struct Parts<'p> {
    snap: &'p Snapshot,
    users: &'p [User],
    media: &'p [Media],
    spaces: &'p [&'p Room],
}

impl Run<'_> {
    /// Checks the steps before messages are done (when messages run, starting the writer),
    /// runs assets and memberships if asked; `false` when messages are not to run.
    fn first_steps(
        &self,
        forger: &mut Forger,
        parts: Parts,
        target: Option<Target>,
        writer: &mut Option<ConduitWriter>,
    ) -> Result<bool> {
        let (a, archive, step) = (self.a, self.archive, self.step);
        if step.runs(Step::Messages) {
            require_before_messages(forger, step)?;
            if let Some(t) = target {
                let w = ConduitWriter::start(t, &a.server_name, archive, self.key, parts.users)?;
                forger.announce_to(w.to.clone());
                *writer = Some(w);
            }
        }
        if step.runs(Step::Assets) {
            assets(forger, archive, &parts, &a.server_name)?;
        }
        if step.runs(Step::Memberships) {
            memberships(forger, archive, &parts, &a.server_name)?;
        }
        Ok(step.runs(Step::Messages))
    }
}

/// A channel read and forged: its files, its report lines, its room.
fn record(forger: &mut Forger, mapper: &mut Mapper, done: ChannelDone) -> Result<()> {
    for m in &done.media {
        forger.media(m)?;
    }
    mapper.ws.skipped.append(done.skipped)?;
    forger.record(&done.room, done.forged)?;
    Ok(())
}

/// The steps before messages must be done, in this run (`wanted`) or an earlier one.
fn require_before_messages(forger: &Forger, wanted: Step) -> Result<()> {
    for before in [Step::Assets, Step::Memberships] {
        if !wanted.runs(before) && !forger.checkpoint().is_done(ItemKind::Step, before.id()) {
            bail!(
                "`mattermost export messages` needs `mattermost export {}` first (or `export all`)",
                before.id()
            );
        }
    }
    Ok(())
}

fn record_step(
    checkpoint: &Checkpoint,
    step: Step,
    files: Vec<(String, String)>,
    counts: BTreeMap<String, u64>,
) -> Result<()> {
    checkpoint.record(Entry {
        kind: ItemKind::Step,
        id: step.id().into(),
        files: files.into_iter().collect(),
        counts,
        errors: Vec::new(),
    })?;
    eprintln!("step {} done", step.id());
    Ok(())
}

/// Records the messages step once the forger has finished the archive.
fn messages_done(archive: &Archive, sum: &ForgeSummary) -> Result<()> {
    let checkpoint = Checkpoint::open(&archive.checkpoint_path())?;
    let counts = BTreeMap::from([
        ("rooms".to_owned(), sum.rooms + sum.rooms_already_done),
        ("events".to_owned(), sum.events),
        ("users".to_owned(), sum.users),
    ]);
    record_step(&checkpoint, Step::Messages, Vec::new(), counts)
}

/// Assets: media, spaces, and the id mappings.
fn assets(forger: &mut Forger, archive: &Archive, p: &Parts, server_name: &str) -> Result<()> {
    for m in p.media {
        forger.media(m)?;
    }
    for s in p.spaces {
        forger.room(s)?;
    }
    let user_ids = mapping::users(p.users);
    let rooms = mapping::rooms(p.snap, server_name);
    let files = vec![
        mapping::write(archive, "users", &user_ids)?,
        mapping::write(archive, "rooms", &rooms)?,
    ];
    let counts = BTreeMap::from([
        ("users".to_owned(), user_ids.len() as u64),
        ("rooms".to_owned(), rooms.len() as u64),
        ("media".to_owned(), p.media.len() as u64),
    ]);
    record_step(forger.checkpoint(), Step::Assets, files, counts)
}

/// Memberships: who is in which room now.
fn memberships(forger: &Forger, archive: &Archive, p: &Parts, server_name: &str) -> Result<()> {
    let members = mapping::memberships(p.snap, &mapping::users(p.users), server_name);
    let total = members.values().map(|m| m.now.len() as u64).sum();
    let files = vec![mapping::write(archive, "memberships", &members)?];
    let counts = BTreeMap::from([
        ("rooms".to_owned(), members.len() as u64),
        ("memberships".to_owned(), total),
    ]);
    record_step(forger.checkpoint(), Step::Memberships, files, counts)
}

impl Run<'_> {
    /// A bulk export: read whole (it is one zip), mapped at once, rooms forged in order.
    fn export_zip(
        &self,
        zip: &std::path::Path,
        target: Option<Target>,
        writer: &mut Option<ConduitWriter>,
    ) -> Result<Option<ForgeSummary>> {
        let (a, archive) = (self.a, self.archive);
        let files = a.archive.join("mattermost-files");
        eprintln!("reading the bulk export {} …", zip.display());
        let snap = export::read(zip, &files)?;
        let options = map_options(a, Some(files))?;
        let mut ws = workspace(&snap, &options);
        existing_accounts(&ws.users, &options, a.merge_existing_accounts)?;
        initial_passwords(a, archive, &mut ws.users, &options)?;
        let mut forger = Forger::new(&ws.users, self.key, archive, &self.options)?;
        let (spaces, channels): (Vec<&Room>, Vec<&Room>) =
            ws.rooms.iter().partition(|r| r.kind == RoomKind::Space);
        let parts = Parts {
            snap: &snap,
            users: &ws.users,
            media: &ws.media,
            spaces: &spaces,
        };
        let messages = self.first_steps(&mut forger, parts, target, writer)?;
        drop(snap);
        if !messages {
            return Ok(None);
        }
        for m in &ws.media {
            forger.media(m)?;
        }
        let bar = Progress::new().bar("rooms", ws.rooms.len() as u64);
        for room in spaces.into_iter().chain(channels) {
            forger.room(room)?;
            bar.inc(1);
        }
        bar.finish();
        let sum = forger.finish(&ws.users, &mut ws.skipped, &ws.source, &ws.source_version)?;
        messages_done(archive, &sum)?;
        Ok(Some(sum))
    }

    /// The database: users, teams and memberships first, then the channels, each read a page
    /// at a time, so memory follows the page size, not the workspace or its largest channel.
    /// Channels already in the archive are not read again.
    async fn export_database(
        &self,
        target: Option<Target>,
        writer: &mut Option<ConduitWriter>,
    ) -> Result<Option<ForgeSummary>> {
        let (a, archive) = (self.a, self.archive);
        let src = open_source(&a.source, connect_ssh(&a.source).await?).await?;
        for note in &src.notes {
            eprintln!("{note}");
        }
        let ds = &src.ds;
        if let (Some(f), None) = (&src.files, &src.ssh) {
            if !f.is_dir() {
                bail!(
                    "the file store {} is not a directory (pass --files)",
                    f.display()
                );
            }
        }
        eprintln!(
            "reading Mattermost ({:?} {}@{}:{}/{}) …",
            ds.driver, ds.user, ds.host, ds.port, ds.database
        );
        let db = MattermostDb::connect(ds).await?;
        let meta = db.snapshot().await?;
        eprintln!(
            "{} users, {} teams, {} channels",
            meta.users.len(),
            meta.teams.len(),
            meta.channels.len()
        );
        if src.files.is_none() && !a.source.no_files {
            // Without a store every file would be left out, reported one by one but imported
            // nowhere: a choice to make, not a default to find out about afterwards.
            let listed = db.file_count().await?;
            if listed > 0 {
                bail!(
                    "the database lists {listed} files, avatars and custom emoji, but no file store \
                     is known: pass --files DIR (Mattermost's FileSettings.Directory) or \
                     --mattermost-config, or --no-files to import without them"
                );
            }
        }
        // Over SSH, files are copied next to the archive as they are needed.
        let remote = match (&src.ssh, &src.files) {
            (Some(ssh), Some(remote)) => Some(Arc::new(RemoteFiles {
                ssh: ssh.clone(),
                remote: remote.clone(),
                local: a.archive.join("mattermost-files"),
            })),
            _ => None,
        };
        let files = match &remote {
            Some(r) => {
                fetch_remote_files(&r.ssh, &r.remote, meta_paths(&meta), &r.local).await?;
                Some(r.local.clone())
            }
            None => src.files.clone(),
        };
        let options = map_options(a, files)?;
        let mut mapper = Mapper::new(&meta, &options);
        existing_accounts(&mapper.ws.users, &options, a.merge_existing_accounts)?;
        initial_passwords(a, archive, &mut mapper.ws.users, &options)?;
        let mut forger = Forger::new(&mapper.ws.users, self.key, archive, &self.options)?;
        let media = std::mem::take(&mut mapper.ws.media);
        let spaces = std::mem::take(&mut mapper.ws.rooms);
        let parts = Parts {
            snap: &meta,
            users: &mapper.ws.users,
            media: &media,
            spaces: &spaces.iter().collect::<Vec<_>>(),
        };
        if !self.first_steps(&mut forger, parts, target, writer)? {
            return Ok(None);
        }
        for m in &media {
            forger.media(m)?;
        }
        for space in &spaces {
            forger.room(space)?;
        }
        // Each channel is read (a page at a time), mapped and forged at once, one channel per
        // core, the biggest first; each is recorded (and written into the database) as soon as
        // it is forged, so the writer always has a room to write while a big one is forged.
        let forging = Arc::new(tokio::sync::Semaphore::new(channels_at_once()));
        let readers = Readers {
            db: Arc::new(db),
            posts: mapper.posts(),
            remote,
            page_posts: a.page_posts as usize,
        };
        let mut order: Vec<&MmChannel> = meta.channels.iter().collect();
        order.sort_by_key(|c| std::cmp::Reverse(c.msg_count));
        let changes = readers.db.channel_changes().await?;
        let mut running = tokio::task::JoinSet::new();
        let bar = Progress::new().bar("channels", meta.channels.len() as u64);
        for c in order {
            let read = !forger.is_done(&room_id(&c.id, &a.server_name));
            let changes = changes.get(&c.id).map_or(&[][..], Vec::as_slice);
            let Some(room) = mapper.channel(c, changes) else {
                bar.inc(1);
                continue;
            };
            let permit = forging.clone().acquire_owned().await?;
            let job = |pages| forger.job(room, pages);
            running.spawn(channels::run(&readers, &c.id, read, job, permit));
            while let Some(done) = running.try_join_next() {
                record(&mut forger, &mut mapper, done??)?;
                bar.inc(1);
            }
        }
        while let Some(done) = running.join_next().await {
            record(&mut forger, &mut mapper, done??)?;
            bar.inc(1);
        }
        bar.finish();
        let sum = forger.finish(
            &mapper.ws.users,
            &mut mapper.ws.skipped,
            "mattermost",
            &meta.version,
        )?;
        messages_done(archive, &sum)?;
        Ok(Some(sum))
    }
}

/// Names the users mapped onto accounts the target database had before (each reported too),
/// and stops unless told to merge them: the posts would be sent as accounts that may be
/// someone else's, and once forged the choice cannot be taken back.
fn existing_accounts(users: &[User], options: &MapOptions, merge: bool) -> Result<()> {
    let onto: Vec<&str> = (users.iter())
        .map(|u| u.user_id.as_str())
        .filter(|id| options.existing_users.contains(*id))
        .collect();
    if onto.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = onto.iter().take(5).copied().collect();
    let more = if onto.len() > shown.len() {
        ", …"
    } else {
        ""
    };
    let which = format!(
        "{} Mattermost users map onto accounts the database already has ({}{more})",
        onto.len(),
        shown.join(", ")
    );
    if !merge {
        bail!(
            "{which}: their posts would be sent as those accounts. If they are the same people \
             (a Synapse migration of the same organisation, say), pass --merge-existing-accounts; \
             else map them to other names with --user-map"
        );
    }
    eprintln!(
        "{which}: their posts are sent as those accounts (import-report.json: user-existing)"
    );
    Ok(())
}

/// `--initial-passwords`: a password for every account that has none, in the file first.
fn initial_passwords(
    a: &ForgeArgs,
    archive: &Archive,
    users: &mut [User],
    options: &MapOptions,
) -> Result<()> {
    let Some(path) = &a.initial_passwords else {
        let without = (users.iter())
            .filter(|u| passwords::needs_one(u, &options.existing_users))
            .count();
        if without > 0 {
            eprintln!(
                "{without} accounts have no password of their own (single sign-on, or a bulk \
                 export, which carries none): they cannot log in until an admin sets one; \
                 --initial-passwords FILE gives each one"
            );
        }
        return Ok(());
    };
    // The hash an earlier run into this archive forged for a user (its user record).
    let earlier = |u: &User| -> transition_matrix::error::Result<Option<String>> {
        let record = archive.user_path(&u.user_id);
        if !record.is_file() {
            return Ok(None);
        }
        let r: UserRecord = fsutil::read_json(&record)?;
        Ok(r.secrets.password_hash)
    };
    let done = passwords::assign(path, users, &options.existing_users, earlier)?;
    eprintln!(
        "initial passwords: {} accounts without a password of their own have one in {} \
         ({} new, {} from an earlier run; mode 0600: hand each to its user)",
        done.new + done.kept,
        path.display(),
        done.new,
        done.kept
    );
    Ok(())
}
