//! Concat lists among a run's inputs, checked right before it starts (and, with the files in a
//! bucket, their entries staged).
//!
//! ffmpeg's concat demuxer opens the files a list names by itself, after every check of the
//! command: `-f concat -i list.txt`, and any input (or entry) that begins with
//! `ffconcat version 1.0`, which ffmpeg's probing takes for a list. [`check`] reads each such
//! list (at most [`MAX_LIST_BYTES`]) and has the sandbox resolve its entries
//! ([`Sandbox::concat_entries`]): an entry that leaves the data directory (`..`, a symlink
//! leading out), names a protocol, an absolute path or a reserved file fails the job before
//! ffmpeg starts, naming the entry, the list and the broken rule, whichever backend holds the
//! files; so does an entry that one of the command's outputs would overwrite
//! ([`ResolvedCommand::check_concat_entry`]). With the files in a bucket, each entry is
//! downloaded into the run's stage at its path, so that ffmpeg finds it where the list says;
//! entries that are lists themselves are read in turn (at most [`MAX_LISTS`] lists per run). An entry missing from the storage is
//! left to ffmpeg, which then fails naming it, as it would on a disk.
//!
//! At submit, [`entries`] reads the lists once more, for the job's
//! [`Footprint`](ffmpeg_core::footprint::Footprint): the files they name are among what the job
//! reads, so that no upload or delete changes them while the job is queued or runs (409, as for
//! its inputs), and no job writing one runs beside it. The lists themselves are in the
//! footprint too, so what they name cannot change before the run reads them again.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ffmpeg_core::duration::concat::{FFCONCAT_HEADER, is_ffconcat};
use ffmpeg_core::sandbox::{ResolvedCommand, ResolvedPath, Sandbox, SandboxError};

use crate::staging::{Stage, StagingError, Transfer};
use crate::storage::{Storage, StorageError};

/// The largest concat list read, in bytes (1 MiB: some 20,000 entries).
pub const MAX_LIST_BYTES: u64 = 1 << 20;

/// The most concat lists one run may read, nested lists included.
pub const MAX_LISTS: usize = 64;

/// Why a run's concat lists were refused. The message is what the job's `error` says.
#[derive(Debug, thiserror::Error)]
pub enum ConcatListError {
    /// An entry the sandbox refuses (with its rule, [`SandboxError::rule`]).
    #[error(transparent)]
    Refused(#[from] SandboxError),
    /// A list larger than [`MAX_LIST_BYTES`]: its entries cannot be checked.
    #[error("concat list `{list}` is larger than {MAX_LIST_BYTES} bytes, the most read to check its entries")]
    TooLarge {
        /// The list, relative to the data directory.
        list: String,
    },
    /// A list that is not UTF-8 text: its names could not be checked as ffmpeg reads them.
    #[error("concat list `{list}` is not UTF-8 text, so its entries cannot be checked")]
    NotText {
        /// The list, relative to the data directory.
        list: String,
    },
    /// More than [`MAX_LISTS`] lists, counting those that lists name.
    #[error("input `{argument}`: more than {MAX_LISTS} concat lists, counting nested ones")]
    TooMany {
        /// The command's input that leads to them.
        argument: String,
    },
    /// A list could not be read.
    #[error("concat list `{list}` cannot be read: {source}")]
    Io {
        /// The list, relative to the data directory.
        list: String,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// An entry could not be downloaded into the stage.
    #[error(transparent)]
    Staging(#[from] StagingError),
}

/// The files that the concat lists among `command`'s inputs name, relative to the data
/// directory, read now and added to `found` as they are read (for the job's
/// [`Footprint`](ffmpeg_core::footprint::Footprint): a caller that stops waiting keeps what
/// was found; nothing is refused here, the run checks the lists again). As [`check`] and
/// ffmpeg read them, in a bucket (`storage`; on a disk: [`entries_in_place`]): the `-f concat`
/// inputs, the inputs without a format that begin with the `ffconcat` header (ffmpeg 5.1's
/// `concat_probe()` reads only that: a `.ffconcat` name without it is no list), and the entries
/// of a list that are lists themselves, found the same way. At most [`MAX_LISTS`] files are
/// looked at, lists or not (in a bucket, each costs one or two requests); stops at the first
/// list whose entries the sandbox refuses.
///
/// # Errors
/// The first failure of the storage to answer (unavailable, known unreachable: a
/// [`StorageError::is_transient`] error; or [`StorageError::NoBucket`]); the reading stops there (what was found so far stays in
/// `found`). Any other failure to read a file only leaves that file out.
pub async fn entries(
    sandbox: &Arc<Sandbox>,
    command: &ResolvedCommand,
    storage: &dyn Storage,
    found: &mut Vec<PathBuf>,
) -> Result<(), StorageError> {
    let mut queue = pending_lists(command);
    let mut read: HashSet<PathBuf> = HashSet::new();
    while let Some(Pending { list, forced, position, argument }) = queue.pop_front() {
        if read.len() >= MAX_LISTS || !read.insert(list.as_path().to_owned()) {
            continue;
        }
        let relative = list.relative().to_string_lossy().into_owned();
        let Some(text) = read_stored_list(storage, &relative, forced).await? else { continue };
        let (sandbox, list, argument) = (Arc::clone(sandbox), list.clone(), Arc::clone(&argument));
        let resolved = blocking(move || sandbox.concat_entries(&list, &text, position, &argument)).await;
        let Ok(named) = resolved else { break };
        for entry in named {
            found.push(entry.relative().to_owned());
            queue.push_back(Pending { list: entry, forced: false, position, argument: Arc::from("") });
        }
    }
    Ok(())
}

/// [`entries`] with the files on a disk, read on the caller's thread (blocking: the caller's
/// trip to a blocking thread for the command's check does it too): what the concat lists
/// among `command`'s inputs name, appended to `found`.
pub fn entries_in_place(sandbox: &Sandbox, command: &ResolvedCommand, found: &mut Vec<PathBuf>) {
    let mut queue = pending_lists(command);
    let mut read: HashSet<PathBuf> = HashSet::new();
    while let Some(Pending { list, forced, position, argument }) = queue.pop_front() {
        if read.len() >= MAX_LISTS || !read.insert(list.as_path().to_owned()) {
            continue;
        }
        let relative = list.relative().to_string_lossy().into_owned();
        let Some(text) = read_list(list.as_path(), forced, &relative).ok().flatten() else { continue };
        let Ok(named) = sandbox.concat_entries(&list, &text, position, &argument) else { break };
        for entry in named {
            found.push(entry.relative().to_owned());
            queue.push_back(Pending { list: entry, forced: false, position, argument: Arc::from("") });
        }
    }
}

/// The text of the list at `path` in `storage`, when it is one (`forced`, or it begins with
/// the `ffconcat` header) of at most [`MAX_LIST_BYTES`] of UTF-8; `None` otherwise (also when
/// it cannot be read).
///
/// # Errors
/// The storage did not answer the file's opening ([`StorageError::is_no_answer`]).
async fn read_stored_list(storage: &dyn Storage, path: &str, forced: bool) -> Result<Option<String>, StorageError> {
    use futures_util::StreamExt as _;
    let file = match storage.open(path).await {
        Ok(file) => file,
        Err(e) if e.is_no_answer() => return Err(e),
        Err(_) => return Ok(None),
    };
    let size = file.meta().size;
    if size > MAX_LIST_BYTES {
        return Ok(None);
    }
    let read = async {
        if !forced {
            let header_len = (FFCONCAT_HEADER.len() as u64).min(size);
            let mut header = Vec::new();
            let mut stream = file.try_clone().ok()?.read(0..header_len);
            while let Some(chunk) = stream.next().await {
                header.extend_from_slice(&chunk.ok()?);
            }
            if !is_ffconcat(&header) {
                return None;
            }
        }
        let mut bytes = Vec::new();
        let mut stream = file.read(0..size);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.ok()?);
        }
        String::from_utf8(bytes).ok()
    };
    Ok(read.await)
}

/// One list to read: where it is, whether `-f concat` forced it (else only a file beginning
/// with the `ffconcat` header is one), and the command's input that leads to it.
struct Pending {
    list: ResolvedPath,
    forced: bool,
    position: usize,
    argument: Arc<str>,
}

/// Checks every concat list of `command` (resolved by `sandbox`, the run's own) and what the
/// lists name; with `staging` (the run's stage and the storage), downloads each entry into the
/// stage first. Returns what was downloaded.
///
/// # Errors
/// [`ConcatListError`]; the first refused entry stops the check.
pub async fn check(
    sandbox: &Arc<Sandbox>,
    command: &ResolvedCommand,
    staging: Option<(&Stage, &dyn Storage)>,
) -> Result<Transfer, ConcatListError> {
    if staging.is_none() {
        // Nothing to download: the whole check on one blocking thread, not one trip per list.
        let (sandbox, command) = (Arc::clone(sandbox), command.clone());
        return blocking(move || check_in_place(&sandbox, &command)).await.map(|()| Transfer::default());
    }
    let mut queue = pending_lists(command);
    let mut transfer = Transfer::default();
    let mut read: HashSet<PathBuf> = HashSet::new();
    let mut lists = 0usize;
    while let Some(Pending { list, forced, position, argument }) = queue.pop_front() {
        if !read.insert(list.as_path().to_owned()) {
            continue;
        }
        let path = list.as_path().to_owned();
        let shown = list.relative().display().to_string();
        let Some(text) = blocking(move || read_list(&path, forced, &shown)).await? else { continue };
        lists += 1;
        if lists > MAX_LISTS {
            return Err(ConcatListError::TooMany { argument: argument.to_string() });
        }
        let entries = {
            let (sandbox, list, argument) = (Arc::clone(sandbox), list.clone(), Arc::clone(&argument));
            blocking(move || sandbox.concat_entries(&list, &text, position, &argument)).await?
        };
        let shown = list.relative().display().to_string();
        for entry in entries {
            command.check_concat_entry(&entry, position, &shown)?;
            if let Some((stage, storage)) = staging {
                let relative = entry.relative().to_string_lossy().into_owned();
                // Already there: an input of the command itself, or an entry listed twice.
                if !tokio::fs::try_exists(entry.as_path()).await.unwrap_or(false) {
                    match stage.download_file(storage, &relative).await {
                        Ok(bytes) => {
                            transfer.files += 1;
                            transfer.bytes += bytes;
                        }
                        // Left to ffmpeg, which names it ("No such file or directory").
                        Err(StagingError::Download(StorageError::NotFound(_) | StorageError::IsADirectory(_))) => {
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            queue.push_back(Pending { list: entry, forced: false, position, argument: Arc::clone(&argument) });
        }
    }
    Ok(transfer)
}

/// [`check`] for lists checked where they are (no stage to download into), in one go. Blocking.
///
/// # Errors
/// As [`check`]; the first refused entry stops the check.
pub fn check_in_place(sandbox: &Sandbox, command: &ResolvedCommand) -> Result<(), ConcatListError> {
    let mut queue = pending_lists(command);
    let mut read: HashSet<PathBuf> = HashSet::new();
    let mut lists = 0usize;
    while let Some(Pending { list, forced, position, argument }) = queue.pop_front() {
        if !read.insert(list.as_path().to_owned()) {
            continue;
        }
        let shown = list.relative().display().to_string();
        let Some(text) = read_list(list.as_path(), forced, &shown)? else { continue };
        lists += 1;
        if lists > MAX_LISTS {
            return Err(ConcatListError::TooMany { argument: argument.to_string() });
        }
        for entry in sandbox.concat_entries(&list, &text, position, &argument)? {
            command.check_concat_entry(&entry, position, &shown)?;
            queue.push_back(Pending { list: entry, forced: false, position, argument: Arc::clone(&argument) });
        }
    }
    Ok(())
}

/// The inputs of `command` that may be concat lists: forced with `-f concat`, or without a
/// format (a list if it begins with the `ffconcat` header).
fn pending_lists(command: &ResolvedCommand) -> VecDeque<Pending> {
    command
        .command()
        .inputs()
        .iter()
        .zip(command.inputs())
        .filter_map(|(input, source)| {
            let forced = match input.format() {
                Some(format) if format.eq_ignore_ascii_case("concat") => true,
                Some(_) => return None,
                None => false,
            };
            Some(Pending {
                list: source.file()?.clone(),
                forced,
                position: input.position(),
                argument: input.url().into(),
            })
        })
        .collect()
}

/// The text of the list at `path` (`shown` in messages); `None` when there is no such file, or
/// when it is not `forced` and does not begin with the `ffconcat` header (not a list). Blocking.
fn read_list(path: &Path, forced: bool, shown: &str) -> Result<Option<String>, ConcatListError> {
    let io_error = |source: io::Error| ConcatListError::Io { list: shown.to_owned(), source };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // Missing, or a directory where ffmpeg wants a file: ffmpeg says so by name.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::IsADirectory) => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut bytes = Vec::new();
    let mut reader = file.take(MAX_LIST_BYTES + 1);
    if !forced {
        (&mut reader).take(FFCONCAT_HEADER.len() as u64).read_to_end(&mut bytes).map_err(io_error)?;
        if !is_ffconcat(&bytes) {
            return Ok(None);
        }
    }
    reader.read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(ConcatListError::TooLarge { list: shown.to_owned() });
    }
    String::from_utf8(bytes).map(Some).map_err(|_| ConcatListError::NotText { list: shown.to_owned() })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|e| Box::new(e.to_string()))),
    }
}
