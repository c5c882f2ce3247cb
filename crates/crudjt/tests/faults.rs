//! Faults of the disk and the file: a full, read-only or slow filesystem,
//! a truncated file, bytes flipped anywhere in it, an unusable directory.
//! Each must give a clear error, never a panic or wrong data, lose nothing
//! already flushed, and, where the fault can clear, let the store recover
//! by itself.
//!
//! The filesystem faults mount a small tmpfs, or an ext4 filesystem on a
//! throttled loop device, which needs root (CI and the development machines
//! run as root); without it those tests say so on stderr and pass without
//! checking anything.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{config, key, open, packed_of_size};
use crudjt::{Config, Error, Limits, OpenError, Store};

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallFs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(SmallFs { mount, _dir: dir })
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.mount)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {options}: {out:?}");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Creates 200-byte tokens until the store refuses one; returns the
/// tokens it acknowledged and the error.
fn fill(store: &Store, most: usize) -> (Vec<String>, Error) {
    let data = packed_of_size(200);
    let mut made = Vec::new();
    for _ in 0..most {
        match store.create_packed(&data, Limits::NONE) {
            Ok(token) => made.push(token.to_string()),
            Err(err) => return (made, err),
        }
    }
    panic!("{most} creates all succeeded: the filesystem never filled");
}

/// Retries `create` until it succeeds, for at most `within`.
fn wait_until_writable(store: &Store, within: Duration) -> String {
    let data = packed_of_size(200);
    let deadline = Instant::now() + within;
    loop {
        match store.create_packed(&data, Limits::NONE) {
            Ok(token) => return token.to_string(),
            Err(err) if Instant::now() < deadline => {
                assert!(matches!(err, Error::Storage(_)), "unexpected error: {err}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("the store did not recover: {err}"),
        }
    }
}

fn assert_all_readable(store: &Store, tokens: &[String]) {
    let data = packed_of_size(200);
    for (i, token) in tokens.iter().enumerate() {
        let entry = store.read_packed(token).unwrap();
        assert_eq!(
            entry.map(|e| e.data),
            Some(data.clone()),
            "token {i} of {}",
            tokens.len()
        );
    }
}

/// The bound on pending writes in [`tight`].
const TIGHT_PENDING_BYTES: u64 = 256 << 10;

/// A small bound on pending writes, so that a failing disk reaches the
/// callers quickly.
fn tight(dir: &Path) -> Config {
    config(dir)
        .flush_interval(Duration::from_millis(20))
        .max_pending_bytes(TIGHT_PENDING_BYTES as usize)
}

#[test]
fn a_full_disk_fails_calls_clearly_and_recovers_when_space_returns() {
    let Some(fs) = SmallFs::mount("1m") else {
        return;
    };
    let dir = fs.mount.join("store");
    let store = Store::open(tight(&dir)).unwrap();

    let (made, err) = fill(&store, 200_000);
    assert!(
        matches!(err, Error::Storage(_)),
        "expected a storage error, got {err}"
    );
    let chain = error_chain(&err);
    assert!(
        chain.contains("No space left"),
        "the cause is not named: {chain}"
    );
    assert!(store.stats().flush_failures > 0);

    fs.remount("size=64m");
    let after = wait_until_writable(&store, Duration::from_secs(10));
    store.flush().unwrap();
    assert_all_readable(&store, &made);
    store.close().unwrap();

    // Every acknowledged create survives a reopen.
    let store = open(&dir);
    assert_all_readable(&store, &made);
    assert!(store.read_packed(&after).unwrap().is_some());
}

#[test]
fn a_read_only_filesystem_is_refused_at_open_and_loses_nothing() {
    let Some(fs) = SmallFs::mount("64m") else {
        return;
    };
    let dir = fs.mount.join("store");
    let tokens = closed_store(&dir, 100);

    // A filesystem with files open for writing cannot turn read-only, so
    // this is the read-only case a master meets: at start.
    fs.remount("ro");
    let Err(err) = Store::open(config(&dir)) else {
        panic!("a store opened for writing on a read-only filesystem");
    };
    let text = error_chain(&err);
    assert!(text.contains("Read-only"), "the cause is not named: {text}");
    assert!(
        text.contains(&dir.display().to_string()),
        "the path is not named: {text}"
    );

    fs.remount("rw");
    let store = open(&dir);
    assert_all_readable(&store, &tokens);
}

/// How fast the slow disk takes writes: bytes and write requests a second.
/// A commit of a full batch of pending writes then takes about half a
/// second.
const SLOW_WRITE_BPS: u64 = 512 << 10;
const SLOW_WRITE_IOPS: u64 = 100;

/// A slow disk, for real: ext4 on a loop device whose writes the kernel's
/// block-I/O throttle (cgroup v1 `blkio.throttle.*`, root group) holds to
/// [`SLOW_WRITE_BPS`] and [`SLOW_WRITE_IOPS`]. The rules name the device,
/// so they slow every write to it, the store's and the journal's alike,
/// and nothing else. Dropping it lifts the rules, unmounts and detaches
/// the device, also when the test panics.
struct SlowDisk {
    mount: PathBuf,
    /// Each step of the setup, once done, so that drop undoes just those.
    device: Option<String>,
    mounted: bool,
    /// The blkio hierarchy and the device's `major:minor`.
    rules: Option<(PathBuf, String)>,
    _dir: tempfile::TempDir,
}

impl SlowDisk {
    const BYTES: u64 = 64 << 20;

    fn make() -> Option<SlowDisk> {
        match SlowDisk::try_make() {
            Ok(disk) => Some(disk),
            Err(reason) => {
                eprintln!("skipped: no slow disk: {reason}");
                None
            }
        }
    }

    fn try_make() -> Result<SlowDisk, String> {
        let blkio = blkio_hierarchy().ok_or("the cgroup v1 blkio controller is not mounted")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(SlowDisk::BYTES))
            .map_err(|e| format!("cannot make the disk image: {e}"))?;
        let mut disk = SlowDisk {
            mount: dir.path().join("fs"),
            device: None,
            mounted: false,
            rules: None,
            _dir: dir,
        };
        std::fs::create_dir(&disk.mount).map_err(|e| e.to_string())?;

        let device = output(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image),
        )?;
        disk.device = Some(device.clone());
        output(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&device))?;
        output(Command::new("mount").arg(&device).arg(&disk.mount))?;
        disk.mounted = true;

        let name = device.trim_start_matches("/dev/");
        let numbers = std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .map_err(|e| format!("cannot find the numbers of {device}: {e}"))?;
        disk.rules = Some((blkio, numbers.trim().to_owned()));
        disk.throttle(SLOW_WRITE_BPS, SLOW_WRITE_IOPS)
            .map_err(|e| format!("cannot throttle {device}: {e}"))?;
        Ok(disk)
    }

    /// Sets the device's write limits; 0 lifts one.
    fn throttle(&self, bps: u64, iops: u64) -> std::io::Result<()> {
        let Some((blkio, numbers)) = &self.rules else {
            return Ok(());
        };
        let rule = |file: &str, limit: u64| {
            std::fs::write(blkio.join(file), format!("{numbers} {limit}\n"))
        };
        let bytes = rule("blkio.throttle.write_bps_device", bps);
        let requests = rule("blkio.throttle.write_iops_device", iops);
        bytes.and(requests)
    }

    /// Makes the disk fast again.
    fn lift(&self) {
        self.throttle(0, 0).expect("the throttle lifts");
    }

    /// A guard that makes the disk fast again when dropped. Declared after
    /// a store, it runs before the store's own drop, so that a failing test
    /// does not wait for the store to flush to the slow disk.
    fn fast_on_drop(&self) -> FastOnDrop<'_> {
        FastOnDrop(self)
    }
}

struct FastOnDrop<'a>(&'a SlowDisk);

impl Drop for FastOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.throttle(0, 0);
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        // Lifted first, so that the unmount's own writes are quick.
        let _ = self.throttle(0, 0);
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        if let Some(device) = &self.device {
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
    }
}

/// Where the cgroup v1 blkio controller is mounted: its root group's
/// throttle rules apply to every write to a device, whoever makes it.
fn blkio_hierarchy() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let cgroup = fields.get(2) == Some(&"cgroup");
        let blkio = fields.get(3)?.split(',').any(|option| option == "blkio");
        (cgroup && blkio).then(|| PathBuf::from(fields[1]))
    })
}

/// Runs a command; its stdout, or why it failed.
fn output(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{command:?} failed: {}", stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A field of `/proc/self/status` in KiB, such as `VmRSS`.
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// What one record of `data` weighs against `max_pending_bytes`: the
/// pending bytes of a store holding just that record, not yet flushed.
fn pending_weight(data: &[u8]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).flush_interval(Duration::from_secs(3600))).unwrap();
    store.create_packed(data, Limits::NONE).unwrap();
    store.stats().pending_bytes
}

/// What the sampling thread saw while the writers ran.
#[derive(Default, Debug)]
struct Seen {
    samples: u64,
    most_pending_bytes: u64,
    backpressured: u64,
    most_rss_kib: u64,
}

fn sample(store: &Store, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let pending = store.stats().pending_bytes;
        seen.samples += 1;
        seen.most_pending_bytes = seen.most_pending_bytes.max(pending);
        seen.backpressured += u64::from(store.is_backpressured());
        seen.most_rss_kib = seen.most_rss_kib.max(memory_kib("VmRSS"));
        std::thread::sleep(Duration::from_millis(2));
    }
    seen
}

/// Creates tokens until told to stop; returns them and the longest call.
fn write_until(store: &Store, stop: &AtomicBool, data: &[u8]) -> (Vec<String>, Duration) {
    let mut made = Vec::new();
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let token = store.create_packed(data, Limits::NONE);
        longest = longest.max(started.elapsed());
        made.push(token.expect("a create on a slow disk").to_string());
    }
    (made, longest)
}

#[test]
fn a_slow_disk_slows_writers_down_and_keeps_memory_bounded() {
    const WRITERS: u64 = 4;
    const WINDOW: Duration = Duration::from_secs(3);
    // Far more than the pending writes and the store's caches need here,
    // and far less than 3 s of unthrottled creates would take (over 100
    // MiB at 200,000 creates a second).
    const MEMORY_BOUND_KIB: u64 = 64 << 10;

    let data = packed_of_size(200);
    let weight = pending_weight(&data);
    let Some(disk) = SlowDisk::make() else {
        return;
    };
    let dir = disk.mount.join("store");
    let store = Store::open(tight(&dir)).unwrap();
    let _fast = disk.fast_on_drop();
    let bound = TIGHT_PENDING_BYTES;
    let baseline_kib = memory_kib("VmRSS");

    let stop_writing = AtomicBool::new(false);
    let stop_sampling = AtomicBool::new(false);
    let started = Instant::now();
    let (made, longest, elapsed, seen) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| scope.spawn(|| write_until(&store, &stop_writing, &data)))
            .collect();
        let sampler = scope.spawn(|| sample(&store, &stop_sampling));
        std::thread::sleep(WINDOW);
        stop_writing.store(true, Ordering::Relaxed);
        let mut made = Vec::new();
        let mut longest = Duration::ZERO;
        for writer in writers {
            let (tokens, wait) = writer.join().expect("a writer failed");
            made.extend(tokens);
            longest = longest.max(wait);
        }
        let elapsed = started.elapsed();
        stop_sampling.store(true, Ordering::Relaxed);
        (made, longest, elapsed, sampler.join().unwrap())
    });
    let stats = store.stats();
    let created = made.len() as u64;
    let grew_kib = seen.most_rss_kib.saturating_sub(baseline_kib);
    eprintln!(
        "slow disk: {created} creates in {elapsed:.1?} by {WRITERS} writers, longest call \
         {longest:.0?}, {} commits; pending at most {} of {bound} bytes, at the bound in {} of \
         {} samples; RSS grew {grew_kib} KiB",
        stats.flushes, seen.most_pending_bytes, seen.backpressured, seen.samples,
    );

    // The writers went on while the disk committed (more than the pending
    // writes can hold), and were held to its pace: every acknowledged
    // create is committed, whose record the disk wrote at least once, or
    // pending. The window is rounded up to whole seconds, and one more
    // second of the disk's rate covers the throttle's slack.
    let pending_capacity = bound / weight;
    assert!(
        created > pending_capacity + WRITERS,
        "the writers stalled: {created} creates"
    );
    assert!(
        seen.backpressured > 0,
        "the writers never met back-pressure"
    );
    let seconds = elapsed.as_millis().div_ceil(1000) as u64 + 1;
    let disk_took = SLOW_WRITE_BPS * seconds / weight;
    assert!(
        created <= disk_took + pending_capacity + WRITERS,
        "{created} creates outran a disk that could take {disk_took} records"
    );

    // A writer checks for room and then adds its record, so each may add
    // one record past the bound.
    let most_pending = seen.most_pending_bytes.max(stats.pending_bytes);
    assert!(
        most_pending <= bound + WRITERS * weight,
        "pending writes reached {most_pending} bytes, the bound is {bound}"
    );
    assert!(
        grew_kib < MEMORY_BOUND_KIB,
        "memory grew {grew_kib} KiB on a slow disk (VmHWM {} KiB)",
        memory_kib("VmHWM")
    );

    // Once the disk is fast again, everything acknowledged is kept.
    disk.lift();
    store.flush().unwrap();
    assert_eq!(store.stats().pending_bytes, 0);
    store.close().unwrap();
    let store = open(&dir);
    assert_eq!(store.stats().tokens, created);
    assert_all_readable(&store, &made);
}

/// A store of `n` tokens, closed; returns the tokens.
fn closed_store(dir: &Path, n: usize) -> Vec<String> {
    let store = open(dir);
    let data = packed_of_size(200);
    let tokens = (0..n)
        .map(|_| {
            store
                .create_packed(&data, Limits::NONE)
                .unwrap()
                .to_string()
        })
        .collect();
    store.close().unwrap();
    tokens
}

fn store_file(dir: &Path) -> PathBuf {
    dir.join(crudjt::FILE_NAME)
}

#[test]
fn a_truncated_file_is_refused_clearly() {
    let pristine = tempfile::tempdir().unwrap();
    closed_store(pristine.path(), 500);
    let full = std::fs::read(store_file(pristine.path())).unwrap();

    for keep in [0, 1, 100, 4096, full.len() / 2, full.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_store(pristine.path(), dir.path());
        std::fs::write(store_file(dir.path()), &full[..keep]).unwrap();
        let opened = catch_unwind(AssertUnwindSafe(|| Store::open(config(dir.path()))));
        let opened = opened.unwrap_or_else(|_| panic!("open panicked on a file cut to {keep}"));
        match opened {
            Err(err) => {
                let text = error_chain(&err);
                assert!(
                    text.contains("store"),
                    "cut to {keep}: unclear error {text}"
                );
            }
            // An empty file is a new store: that is what an empty file
            // means, and nothing was there to lose.
            Ok(_) => assert_eq!(keep, 0, "a file cut to {keep} bytes opened"),
        }
    }
}

#[test]
fn flipped_bytes_anywhere_never_panic_or_return_wrong_data() {
    let pristine = tempfile::tempdir().unwrap();
    let tokens = closed_store(pristine.path(), 2_000);
    let data = packed_of_size(200);
    let len = std::fs::metadata(store_file(pristine.path()))
        .unwrap()
        .len();

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut outcomes = [0_usize; 3];
    for round in 0..60 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let offset = (seed >> 11) % len;
        let dir = tempfile::tempdir().unwrap();
        copy_store(pristine.path(), dir.path());
        flip(&store_file(dir.path()), offset, (seed >> 3) as u8 | 1);

        let checked = catch_unwind(AssertUnwindSafe(|| {
            let store = match Store::open(config(dir.path())) {
                Ok(store) => store,
                Err(_) => return 0,
            };
            for token in &tokens {
                match store.read_packed(token) {
                    Ok(Some(entry)) => assert_eq!(entry.data, data, "wrong data returned"),
                    Ok(None) | Err(Error::Corrupt { .. } | Error::Storage(_)) => {}
                    Err(err) => panic!("unexpected error {err}"),
                }
            }
            drop(store);
            1
        }));
        match checked {
            Ok(kind) => outcomes[kind] += 1,
            Err(_) => panic!("round {round}: a byte flipped at {offset} of {len} caused a panic"),
        }
    }
    eprintln!("refused at open: {}, opened: {}", outcomes[0], outcomes[1]);
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let Err(err) = Store::open(Config::new(key()).path(file.join("store"))) else {
        panic!("a store opened beneath a regular file");
    };
    assert!(matches!(err, OpenError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("a-file"),
        "the path is not named: {err}"
    );
}

fn copy_store(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn flip(file: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= mask;
    std::fs::write(file, bytes).unwrap();
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
