#![allow(clippy::unwrap_used)]

use super::*;

/// Builds journals by hand: the encoding the shim writes.
struct Writer {
    bytes: Vec<u8>,
    seq: u64,
}

impl Writer {
    fn new(root: u64) -> Writer {
        let mut w = Writer { bytes: Vec::new(), seq: 0 };
        w.record(12, &[F::U(1), F::U(root)]);
        w
    }

    /// The journal's size: what an fsync starting now covers.
    fn now(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn record(&mut self, kind: u8, fields: &[F<'_>]) {
        let mut body = vec![kind];
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&self.seq.to_le_bytes());
        self.seq += 1;
        for f in fields {
            match f {
                F::U(v) => body.extend_from_slice(&v.to_le_bytes()),
                F::B(b) => {
                    body.extend_from_slice(&(b.len() as u64).to_le_bytes());
                    body.extend_from_slice(b);
                }
            }
        }
        self.bytes.extend_from_slice(&((body.len() + 8) as u64).to_le_bytes());
        self.bytes.extend_from_slice(&body);
    }

    fn create(&mut self, parent: u64, name: &str, ino: u64) {
        self.record(3, &[F::U(parent), F::B(name.as_bytes()), F::U(ino)]);
    }
    fn mkdir(&mut self, parent: u64, name: &str, ino: u64) {
        self.record(4, &[F::U(parent), F::B(name.as_bytes()), F::U(ino)]);
    }
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) {
        self.record(1, &[F::U(ino), F::U(offset), F::B(data)]);
    }
    fn resize(&mut self, ino: u64, size: u64) {
        self.record(2, &[F::U(ino), F::U(size)]);
    }
    fn rename(&mut self, dir: u64, from: &str, to: &str) {
        self.record(5, &[F::U(dir), F::B(from.as_bytes()), F::U(dir), F::B(to.as_bytes())]);
    }
    fn unlink(&mut self, dir: u64, name: &str) {
        self.record(6, &[F::U(dir), F::B(name.as_bytes())]);
    }
    /// An fsync that started now and returned.
    fn fsync(&mut self, ino: u64) {
        let covers = self.now();
        self.fsync_covering(ino, covers);
    }
    fn fsync_covering(&mut self, ino: u64, covers: u64) {
        self.record(7, &[F::U(ino), F::U(covers)]);
    }
    fn sync_all(&mut self) {
        let covers = self.now();
        self.record(8, &[F::U(covers)]);
    }
    fn unknown(&mut self, what: &str) {
        self.record(10, &[F::B(what.as_bytes())]);
    }
    fn off(&mut self) {
        self.record(11, &[]);
    }

    fn journal(&self) -> Journal {
        Journal::parse(&self.bytes).unwrap()
    }
}

enum F<'a> {
    U(u64),
    B(&'a [u8]),
}

/// An empty temp dir, its model and its root inode.
fn empty() -> (tempfile::TempDir, Model, u64) {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::scan(dir.path()).unwrap();
    let root = std::fs::metadata(dir.path()).unwrap().ino();
    (dir, model, root)
}

fn file(content: &[u8]) -> Entry {
    Entry::File(content.to_vec())
}

fn tree(entries: &[(&str, Entry)]) -> BTreeMap<PathBuf, Entry> {
    entries.iter().map(|(p, e)| (PathBuf::from(p), e.clone())).collect()
}

const F1: u64 = 1 << 40;
const F2: u64 = (1 << 40) + 1;
const D1: u64 = (1 << 40) + 2;

#[test]
fn an_unsynced_write_is_dropped_and_a_synced_one_kept() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.fsync(root);
    w.write(F1, 0, b"kept");
    w.fsync(F1);
    w.write(F1, 4, b"-lost");
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b"kept"))]));
    assert_eq!(m.live_tree().unwrap(), tree(&[("a", file(b"kept-lost"))]));
}

#[test]
fn a_file_synced_in_a_directory_never_synced_does_not_exist() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.write(F1, 0, b"data");
    w.fsync(F1);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[]));
}

#[test]
fn a_rename_without_a_directory_fsync_reverts() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a.tmp", F1);
    w.write(F1, 0, b"new");
    w.fsync(F1);
    w.fsync(root);
    w.rename(root, "a.tmp", "a");
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a.tmp", file(b"new"))]));
    assert_eq!(m.live_tree().unwrap(), tree(&[("a", file(b"new"))]));
}

#[test]
fn a_rename_with_a_directory_fsync_lands_and_replaces_the_old_file() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.write(F1, 0, b"old");
    w.fsync(F1);
    w.create(root, "a.tmp", F2);
    w.write(F2, 0, b"new");
    w.fsync(F2);
    w.fsync(root);
    w.rename(root, "a.tmp", "a");
    w.fsync(root);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b"new"))]));
}

#[test]
fn truncate_then_sync_and_growth_reads_as_zeros() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.fsync(root);
    w.write(F1, 0, b"0123456789");
    w.resize(F1, 4);
    w.fsync(F1);
    w.resize(F1, 6);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b"0123"))]));
    assert_eq!(m.live_tree().unwrap(), tree(&[("a", file(b"0123\0\0"))]));
}

#[test]
fn the_live_check_sees_written_zeros_and_a_zero_tail_as_the_same_bytes() {
    let (d, _, root) = empty();
    let ino = {
        std::fs::write(d.path().join("a"), b"x\0\0\0").unwrap();
        std::fs::metadata(d.path().join("a")).unwrap().ino()
    };
    let mut m2 = Model::scan(d.path()).unwrap();
    let mut w = Writer::new(root);
    w.write(ino, 4, &[0, 0]);
    w.resize(ino, 8);
    m2.replay(&w.journal()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(d.path().join("a")).unwrap();
    f.set_len(8).unwrap();
    m2.check_live(d.path()).unwrap();
    assert_eq!(m2.durable_tree().unwrap(), tree(&[("a", file(b"x\0\0\0"))]));
    std::fs::write(d.path().join("a"), b"x\0\0\0\0\0\0y").unwrap();
    assert!(m2.check_live(d.path()).is_err());
}

#[test]
fn overlapping_writes_apply_in_journal_order() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.fsync(root);
    w.write(F1, 0, b"aaaaaa");
    w.write(F1, 2, b"bb");
    w.write(F1, 8, b"c");
    w.write(F1, 1, b"d");
    w.fsync(F1);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b"adbbaa\0\0c"))]));
}

#[test]
fn an_fsync_covers_only_what_was_journaled_before_it_started() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.fsync(root);
    w.write(F1, 0, b"before");
    let started = w.now();
    // Another thread's write lands while the fsync runs.
    w.write(F1, 6, b"-during");
    w.fsync_covering(F1, started);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b"before"))]));
}

#[test]
fn directories_need_their_parent_synced_too() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.mkdir(root, "member", D1);
    w.create(D1, "wal", F1);
    w.write(F1, 0, b"x");
    w.fsync(F1);
    w.fsync(D1);
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[]), "member's own entry in the root was never synced");
    let mut w2 = Writer { bytes: w.bytes.clone(), seq: w.seq };
    w2.fsync(root);
    let mut m2 = Model::scan(_d.path()).unwrap();
    m2.replay(&w2.journal()).unwrap();
    assert_eq!(m2.durable_tree().unwrap(), tree(&[("member", Entry::Dir), ("member/wal", file(b"x"))]));
}

#[test]
fn an_unlink_is_durable_only_after_the_directory_fsync() {
    let (d, _, root) = empty();
    std::fs::write(d.path().join("old"), b"was here").unwrap();
    let ino = std::fs::metadata(d.path().join("old")).unwrap().ino();
    let mut m = Model::scan(d.path()).unwrap();
    let mut w = Writer::new(root);
    w.unlink(root, "old");
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("old", file(b"was here"))]), "the start state is durable");
    w.fsync(root);
    // The inode number may be reused once the old file is gone.
    w.create(root, "new", ino);
    w.write(ino, 0, b"n");
    w.fsync(ino);
    w.fsync(root);
    let mut m = Model::scan(d.path()).unwrap();
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("new", file(b"n"))]));
}

#[test]
fn sync_all_makes_everything_durable() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.mkdir(root, "d", D1);
    w.create(D1, "a", F1);
    w.write(F1, 0, b"x");
    w.sync_all();
    w.write(F1, 1, b"y");
    m.replay(&w.journal()).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("d", Entry::Dir), ("d/a", file(b"x"))]));
}

#[test]
fn unmodelled_operations_and_records_after_power_off_are_errors() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.unknown("mmap(PROT_WRITE, MAP_SHARED)");
    let err = m.replay(&w.journal()).unwrap_err().to_string();
    assert!(err.contains("does not model: mmap"), "{err}");

    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.off();
    w.create(root, "a", F1);
    let err = m.replay(&w.journal()).unwrap_err().to_string();
    assert!(err.contains("after power off"), "{err}");

    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.write(F1, 0, b"x");
    assert!(m.replay(&w.journal()).is_err(), "a write to an inode the model does not know");
}

#[test]
fn a_torn_last_record_is_ignored() {
    let (_d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.create(root, "a", F1);
    w.fsync(root);
    let cut = w.bytes.len();
    w.write(F1, 0, b"torn");
    let mut bytes = w.bytes.clone();
    bytes.truncate(cut + 20);
    let journal = Journal::parse(&bytes).unwrap();
    assert_eq!(journal.torn_tail, 20);
    m.replay(&journal).unwrap();
    assert_eq!(m.durable_tree().unwrap(), tree(&[("a", file(b""))]));
}

#[test]
fn write_durable_builds_the_durable_tree() {
    let (d, mut m, root) = empty();
    let mut w = Writer::new(root);
    w.mkdir(root, "m", D1);
    w.create(D1, "f", F1);
    w.write(F1, 0, b"abc");
    w.sync_all();
    m.replay(&w.journal()).unwrap();
    let out = d.path().join("image");
    m.write_durable(&out).unwrap();
    assert_eq!(scan_tree(&out).unwrap(), tree(&[("m", Entry::Dir), ("m/f", file(b"abc"))]));
}

/// The shim and the model together, on coreutils: `sh` redirections, `mv`,
/// `rm`, `mkdir` and `sync FILE` (fsync) really run under `LD_PRELOAD`.
#[test]
fn the_shim_journals_what_coreutils_do() {
    let Some(cc) = which("cc") else {
        eprintln!("skipping: cc is not installed");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let shim = compile_shim(&cc, work.path()).unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("before"), b"start").unwrap();
    let data = data.canonicalize().unwrap();
    let mut model = Model::scan(&data).unwrap();
    let journal = work.path().join("journal");
    let script = "set -e; cd \"$1\"; \
        mkdir d; printf synced > d/a; sync d/a; sync d; sync .; \
        printf ' and more' >> d/a; \
        printf tmp > d/b.tmp; sync d/b.tmp d; mv d/b.tmp d/b; \
        rm before; sync .";
    let status = std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&data)
        .envs(shim_env(&shim, &data, &journal, None))
        .status()
        .unwrap();
    assert!(status.success());
    let journal = Journal::read(&journal).unwrap();
    model.replay(&journal).unwrap();
    model.check_live(&data).unwrap();
    // d/a's append was never synced, nor the rename of d/b.tmp; the removal
    // of "before" was.
    assert_eq!(
        model.durable_tree().unwrap(),
        tree(&[("d", Entry::Dir), ("d/a", file(b"synced")), ("d/b.tmp", file(b"tmp"))])
    );

    // A change the journal does not explain is caught.
    std::fs::write(data.join("d/a"), b"changed behind the shim's back").unwrap();
    let err = model.check_live(&data).unwrap_err().to_string();
    assert!(err.contains("d/a: model has 15 bytes"), "{err}");
    std::fs::write(data.join("stray"), b"").unwrap();
    let err = model.check_live(&data).unwrap_err().to_string();
    assert!(err.contains("stray is on disk only"), "{err}");
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
