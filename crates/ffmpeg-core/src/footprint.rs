//! A command's footprint: every file it may read and every file it may write, as
//! (directory, name matcher) pairs relative to the data directory.
//!
//! A command names some files (`-i in.mp4`, `out.mp4`, `-segment_list list.m3u8`) and ffmpeg
//! derives others from those names: two-pass logs from `-passlogfile`, a muxer's segments and
//! playlists, temporary files renamed at the end. The footprint lists both kinds, each as a
//! [`FileSet`]: a directory and the names in it ([`Names`]), marked [`Claim::Named`] or
//! [`Claim::Derived`]. It is a pure function of a [`ResolvedCommand`]: no file is looked at.
//!
//! Two uses:
//! - **Who may run together.** [`Footprint::conflicts_with`] is true when one command may write
//!   a file the other reads or writes, or a file where the other writes a directory (`race/a`
//!   and `race/a/x.mp4`). It is conservative: two patterns that could name one file overlap
//!   ([`pattern::may_overlap`]), and a directory holding a pattern (`hls/%v`) may be any
//!   directory. A job queue runs conflicting commands one after the other.
//! - **Which files are a run's.** A file in a written directory that a write set matches could
//!   have been written by the run. Whether it *was* depends on what existed before the run: the
//!   caller snapshots the written directories ([`Footprint::written_dirs`]) and applies the rule
//!   documented on [`Claim`].
//!
//! Derived names follow ffmpeg 5.1's sources:
//! - `-passlogfile PREFIX`: `PREFIX-N.log` (`fftools/ffmpeg_opt.c`, `"%s-%d.log"` with the
//!   output stream's index N), which libx264 writes as `PREFIX-N.log.temp` and renames, with its
//!   macroblock-tree statistics in `PREFIX-N.log.mbtree` (`.mbtree.temp` while written; x264's
//!   `encoder/ratecontrol.c`). These are read too (pass 2).
//! - Encoder statistics named in `-x264-params`/`-x264opts`/`-x265-params` (`stats=F`, or
//!   the library's default `x264_2pass.log`/`x265_2pass.log` that the sandbox adds): `F` and
//!   what the library derives from it (x264: `F.temp`, `F.mbtree`, `F.mbtree.temp`; x265:
//!   `F.temp`, `F.cutree`, `F.cutree.temp`), read and written; see
//!   [`Naming::Suffixed`](crate::policy::Naming::Suffixed).
//! - HLS (`-f hls` or a `.m3u8` output `DIR/STEM.m3u8`, `libavformat/hlsenc.c`): segments
//!   `STEM%d.ts`/`STEM%d.m4s` (`STEM.ts` with `single_file`, `STEM-DATE.ts` with `strftime`),
//!   WebVTT `STEM%d.vtt` and `STEM_vtt.m3u8`, the fMP4 init segment `init.mp4` (`init_N.mp4`
//!   per variant stream), the key `STEM.m3u8.key` (`hls_enc`); `%v` in the name stands for
//!   any variant.
//! - DASH (`-f dash` or `.mpd`, `libavformat/dashenc.c`): `init-stream$RepresentationID$...`,
//!   `chunk-stream$RepresentationID$-$Number$...`, `STEM-streamN.EXT` (`single_file`), HLS
//!   playlists `media_N.m3u8` and `master.m3u8` (`hls_playlist`).
//! - Every written file may first be written as `NAME.tmp` and renamed (HLS `temp_file`, DASH
//!   and `segment` lists on local files, image2's `atomic_writing`).
//!
//! ```
//! use ffmpeg_core::command::Command;
//! use ffmpeg_core::footprint::Footprint;
//! use ffmpeg_core::sandbox::Sandbox;
//! use std::path::Path;
//!
//! # let dir = tempfile::tempdir()?;
//! let sandbox = Sandbox::new(dir.path())?;
//! let resolve = |c: &str| sandbox.resolve_command(&Command::parse(c)?).map_err(Box::<dyn std::error::Error>::from);
//! let pass1 = Footprint::of(&resolve("-i a.mp4 -pass 1 -passlogfile logs/x -f null -")?);
//! assert!(pass1.writes_file(Path::new("logs/x-0.log")));
//! assert!(!pass1.writes_file(Path::new("logs/x2.mp4")));
//!
//! // An HLS playlist's segments `x0.ts`, `x1.ts`, ... may be another job's `x2.ts`.
//! let hls = Footprint::of(&resolve("-i b.mp4 -f hls logs/x.m3u8")?);
//! assert!(hls.conflicts_with(&Footprint::of(&resolve("-i c.mp4 logs/x2.ts")?)));
//! assert!(!hls.conflicts_with(&Footprint::of(&resolve("-i c.mp4 logs/x2.mp4")?)));
//! // Reading what another job writes conflicts too; reading alongside does not.
//! assert!(hls.conflicts_with(&Footprint::of(&resolve("-i logs/x0.ts -c copy y.mp4")?)));
//! assert!(!hls.conflicts_with(&Footprint::of(&resolve("-i b.mp4 -c copy y.mp4")?)));
//! // A file where the other writes a directory: one of the two must fail, so not together.
//! let file = Footprint::of(&resolve("-i b.mp4 -f mp4 race/a")?);
//! assert!(file.conflicts_with(&Footprint::of(&resolve("-i c.mp4 race/a/x.mp4")?)));
//! assert!(!file.conflicts_with(&Footprint::of(&resolve("-i c.mp4 race/ab/x.mp4")?)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::command::{Opt, Output};
use crate::pattern;
use crate::policy::{Access, FileUse, Naming};
use crate::sandbox::{InputSource, OptionFile, OutputTarget, ResolvedCommand, ResolvedPath};

/// What a command may read and write. Built by [`Footprint::of`]; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Footprint {
    reads: Vec<FileSet>,
    writes: Vec<FileSet>,
}

/// Some files in one directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FileSet {
    dir: PathBuf,
    names: Names,
    claim: Claim,
}

/// Which names of a directory a [`FileSet`] covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Names {
    /// Exactly this name.
    Exact(String),
    /// Names matching a pattern in [`pattern`] syntax (`%d` digits, `%%` a literal `%`, other
    /// `%x` and `$...$` any text).
    Pattern(String),
    /// Every file in the directory and below it (a directory an option reads, `fontsdir`).
    Tree,
}

/// Why two footprints conflict ([`Footprint::conflict_with`]): a file set of the other
/// command's that this one's files could meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conflict<'a> {
    /// The other command's file set.
    pub set: &'a FileSet,
    /// Whether the other command writes it (else it only reads it, and this one writes it).
    pub written: bool,
}

/// Why a written file would be the run's, which decides when an existing file counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Claim {
    /// The command names it (an output, `-segment_list`, `psnr=stats_file=`, an
    /// `-hls_segment_filename` pattern): ffmpeg was told to write it. Such a file is the run's
    /// if it did not exist before the run or changed during it (ffmpeg overwrote it).
    Named,
    /// ffmpeg derives the name (pass logs, a muxer's segments and temporary files): the file
    /// is the run's if it did not exist before the run or changed during it, as a named one
    /// (a second run of an HLS command rewrites its segments under the same names, and they
    /// are that run's as they were the first one's; tester finding L19). A derived name that
    /// existed and that the run left alone (an older run's later segment) is not the run's.
    Derived,
    /// A file an option appends to when it exists (x265's `csv`,
    /// [`Access::Append`](crate::policy::Access::Append)): the run's only if it did not exist
    /// before the run. One that existed holds more than the run wrote, so it is neither listed
    /// nor removed even though the run changed it.
    Appended,
}

/// The set as a path relative to the data directory: `dir/name` for one name, `dir/PATTERN`
/// for a pattern (in [`pattern`] syntax, as the command wrote it), `dir/` for every file below
/// a directory (`./` for the data directory itself).
impl std::fmt::Display for FileSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = path_text(&self.dir);
        let name = match &self.names {
            Names::Exact(name) | Names::Pattern(name) => name.as_str(),
            Names::Tree if dir.is_empty() => return f.write_str("./"),
            Names::Tree => "",
        };
        if dir.is_empty() { f.write_str(name) } else { write!(f, "{dir}/{name}") }
    }
}

impl FileSet {
    /// The directory, relative to the data directory (empty for the data directory itself).
    /// It may hold a pattern (`hls/%v`), which can stand for any directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names covered.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Named by the command, or derived by ffmpeg.
    pub fn claim(&self) -> Claim {
        self.claim
    }

    /// Does this set cover the file `name` in directory `dir` (relative to the data directory)?
    pub fn matches(&self, dir: &Path, name: &str) -> bool {
        match &self.names {
            Names::Tree => dir.starts_with(&self.dir),
            Names::Exact(exact) => self.same_dir(dir) && exact == name,
            Names::Pattern(p) => self.same_dir(dir) && (pattern::matches(p, name)),
        }
    }

    fn same_dir(&self, dir: &Path) -> bool {
        self.dir == dir || (has_pattern(&self.dir) && pattern::matches(&path_text(&self.dir), &path_text(dir)))
    }

    /// Could this set and `other` cover one file? Conservative: `true` whenever it cannot be
    /// ruled out from the names alone.
    pub fn overlaps(&self, other: &FileSet) -> bool {
        match (&self.names, &other.names) {
            (Names::Tree, _) => other.dir.starts_with(&self.dir) || has_pattern(&other.dir),
            (_, Names::Tree) => self.dir.starts_with(&other.dir) || has_pattern(&self.dir),
            _ if has_pattern(&self.dir) || has_pattern(&other.dir) => {
                pattern::may_overlap(&self.full_pattern(), &other.full_pattern())
            }
            // Two names: the same file or not (what the patterns would say, without building
            // them: the claim of a queue compares many footprints).
            (Names::Exact(a), Names::Exact(b)) => a == b && self.dir == other.dir,
            _ => self.dir == other.dir && pattern::may_overlap(&self.name_pattern(), &other.name_pattern()),
        }
    }

    /// Could a file of this set be a directory above a file of `other` (`a` and `a/x.mp4`,
    /// `a` and `a/b/c.png`, `seg%d` and `seg1/x`)? A disk then refuses one of the two writes; a
    /// bucket would keep both, a file and a "directory" of one name. Conservative like
    /// [`FileSet::overlaps`]: `true` whenever it cannot be ruled out from the names alone.
    pub fn may_be_above(&self, other: &FileSet) -> bool {
        if has_pattern(&self.dir) || has_pattern(&other.dir) {
            // Some file of `self` is `other`'s directory, or one of its ancestors.
            let mine = self.full_pattern();
            let theirs = path_text(&other.dir);
            return !theirs.is_empty()
                && (pattern::may_overlap(&mine, &theirs) || pattern::may_overlap(&format!("{mine}/%s"), &theirs));
        }
        let Ok(below) = other.dir.strip_prefix(&self.dir) else { return false };
        // Each directory of `other` below ours that one of our names could be (a name never
        // holds `/`, but a strftime pattern may expand to one: every depth is tried).
        let parts: Vec<Cow<'_, str>> = below.iter().map(|part| part.to_string_lossy()).collect();
        (1..=parts.len()).any(|depth| {
            let candidate = parts[..depth].join("/");
            match &self.names {
                Names::Exact(name) => depth == 1 && *name == candidate,
                Names::Pattern(p) => pattern::matches(p, &candidate),
                Names::Tree => true,
            }
        })
    }

    /// The `NAME.tmp` set [`Footprint`] adds beside this one (a name written first and
    /// renamed); `None` for a tree.
    fn tmp_twin(&self) -> Option<FileSet> {
        let names = match &self.names {
            Names::Exact(name) => Names::Pattern(format!("{}.tmp", escape(name))),
            Names::Pattern(p) => Names::Pattern(format!("{p}.tmp")),
            Names::Tree => return None,
        };
        Some(FileSet { dir: self.dir.clone(), names, claim: Claim::Derived })
    }

    /// The names as a pattern (an exact name escaped).
    fn name_pattern(&self) -> Cow<'_, str> {
        match &self.names {
            Names::Exact(name) => escape(name),
            Names::Pattern(p) => Cow::Borrowed(p),
            Names::Tree => Cow::Borrowed("%s"),
        }
    }

    /// Directory and names as one pattern (the directory's own placeholders kept).
    fn full_pattern(&self) -> String {
        let dir = path_text(&self.dir);
        if dir.is_empty() { self.name_pattern().into_owned() } else { format!("{dir}/{}", self.name_pattern()) }
    }
}

impl Footprint {
    /// The footprint of `command`: its inputs and read option files (reads), its outputs,
    /// written option files and the names ffmpeg derives from them (writes). Pass-log prefixes
    /// are both read and written.
    pub fn of(command: &ResolvedCommand) -> Footprint {
        let mut fp = Footprint::default();
        for input in command.inputs() {
            match input {
                InputSource::File(path) => {
                    let (dir, name) = split(path);
                    fp.reads.push(FileSet { dir: dir.clone(), names: Names::Exact(name.clone()), claim: Claim::Named });
                    if pattern::is_pattern(&name) {
                        fp.reads.push(FileSet { dir, names: Names::Pattern(name), claim: Claim::Named });
                    }
                }
                // Every name the wildcards may match (a superset: `?` and `[...]` as any text).
                InputSource::Glob(glob) => fp.reads.push(FileSet {
                    dir: glob.dir().relative().to_owned(),
                    names: Names::Pattern(pattern::glob_to_pattern(glob.pattern())),
                    claim: Claim::Named,
                }),
                _ => {}
            }
        }
        for index in 0..command.outputs().len() {
            fp.add_output_of(command, index);
        }
        for file in command.option_files() {
            fp.add_option_file_of(command, file);
        }
        fp.reads.sort();
        fp.reads.dedup();
        fp.writes.sort();
        fp.writes.dedup();
        fp
    }

    /// Every file set the command may write that lasts beyond the run, with the argument that
    /// makes ffmpeg write it: an output URL (its muxer's segments, playlists and keys
    /// included) or an option naming a file (`-hls_segment_filename`, `-passlogfile` and the
    /// logs derived from it, `psnr=stats_file=...`). The `NAME.tmp` twin of each set (a name
    /// some muxers write first and rename) is left out: it exists only while ffmpeg runs. What
    /// a job may leave in a storage, and the argument to name when a storage cannot hold it.
    pub fn written_by_argument(command: &ResolvedCommand) -> Vec<WrittenBy> {
        let mut out = Vec::new();
        let mut add = |fp: Footprint, position: usize, argument: String| {
            let twins: Vec<FileSet> = fp.writes.iter().filter_map(FileSet::tmp_twin).collect();
            let lasting = fp.writes.into_iter().filter(|set| !twins.contains(set));
            out.extend(lasting.map(|set| WrittenBy { position, argument: argument.clone(), set }));
        };
        for (index, output) in command.command().outputs().iter().enumerate() {
            let mut fp = Footprint::default();
            fp.add_output_of(command, index);
            add(fp, output.position(), output.url().to_owned());
        }
        for file in command.option_files() {
            let mut fp = Footprint::default();
            fp.add_option_file_of(command, file);
            let argument = option_at(command, file.position())
                .map_or_else(|| file.path().relative().display().to_string(), ToString::to_string);
            add(fp, file.position(), argument);
        }
        out
    }

    /// Adds `files` (each relative to the data directory) to what the command reads: files
    /// that no argument names but that ffmpeg opens because of what an input holds (the
    /// entries of a concat list, which the caller reads).
    pub fn add_read_files<P: AsRef<Path>>(&mut self, files: impl IntoIterator<Item = P>) {
        for file in files {
            let file = file.as_ref();
            let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            let dir = file.parent().unwrap_or(Path::new("")).to_owned();
            self.reads.push(FileSet { dir, names: Names::Exact(name), claim: Claim::Named });
        }
        self.reads.sort();
        self.reads.dedup();
    }

    /// The file sets the command may read (inputs, read option files, pass logs).
    pub fn reads(&self) -> &[FileSet] {
        &self.reads
    }

    /// The file sets the command may write (outputs, written option files, derived names).
    pub fn writes(&self) -> &[FileSet] {
        &self.writes
    }

    /// The directories the command may write into, relative to the data directory: where a
    /// run's files are looked for, and what a snapshot before the run must cover.
    pub fn written_dirs(&self) -> BTreeSet<&Path> {
        self.writes.iter().map(|set| set.dir.as_path()).collect()
    }

    /// May a command with this footprint run while one with `other` runs? `false` when either
    /// may write a file the other reads or writes, or a file where the other writes a
    /// directory ([`FileSet::may_be_above`]: `race/a` and `race/a/x.mp4`; run together, both
    /// would pass the storage's check before either wrote, and a bucket would keep a file and
    /// a "directory" of one name). Symmetric.
    pub fn conflicts_with(&self, other: &Footprint) -> bool {
        self.conflict_with(other).is_some()
    }

    /// Why [`Footprint::conflicts_with`] says `other` may not run beside this command: the
    /// first of `other`'s file sets that one of this footprint's sets could share a file with,
    /// or lie above or below as a directory, and whether `other` writes or only reads it.
    /// `None` when they may run together. Checked in the order writes and writes, this
    /// footprint's writes and `other`'s reads, its reads and `other`'s writes, then files
    /// above directories either way.
    ///
    /// ```
    /// # use ffmpeg_core::{command::Command, footprint::Footprint, sandbox::Sandbox};
    /// # let dir = tempfile::tempdir()?;
    /// # let sandbox = Sandbox::new(dir.path())?;
    /// # let resolve = |line: &str| sandbox.resolve_command(&Command::parse(line).unwrap());
    /// let writer = Footprint::of(&resolve("-i a.mp4 ord1/g.mp4")?);
    /// let reader = Footprint::of(&resolve("-i ord1/g.mp4 -c copy ord1/g2.mp4")?);
    /// let why = reader.conflict_with(&writer).unwrap();
    /// assert!(why.written);
    /// assert_eq!(why.set.to_string(), "ord1/g.mp4");
    /// // Seen from the writer: the reader reads it.
    /// let why = writer.conflict_with(&reader).unwrap();
    /// assert_eq!((why.written, why.set.to_string().as_str()), (false, "ord1/g.mp4"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conflict_with<'a>(&self, other: &'a Footprint) -> Option<Conflict<'a>> {
        let overlap = |a: &[FileSet], b: &'a [FileSet]| b.iter().find(|y| a.iter().any(|x| x.overlaps(y)));
        let written = |set| Conflict { set, written: true };
        overlap(&self.writes, &other.writes)
            .map(written)
            .or_else(|| overlap(&self.writes, &other.reads).map(|set| Conflict { set, written: false }))
            .or_else(|| overlap(&self.reads, &other.writes).map(written))
            .or_else(|| other.writes.iter().find(|y| self.writes.iter().any(|x| x.may_be_above(y))).map(written))
            .or_else(|| other.writes.iter().find(|y| self.writes.iter().any(|x| y.may_be_above(x))).map(written))
    }

    /// May the command write a file at a directory above `path` (relative to the data
    /// directory), so that `path` would lie below a file, or a file below `path`, so that
    /// `path` would be a directory? Where a file may not be put while the command is queued
    /// or running (the files API's uploads), beside [`Footprint::touches_file`].
    pub fn writes_above_or_below(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return false };
        let dir = path.parent().unwrap_or(Path::new("")).to_owned();
        let file = FileSet { dir, names: Names::Exact(name), claim: Claim::Named };
        self.writes.iter().any(|set| set.may_be_above(&file) || file.may_be_above(set))
    }

    /// The strongest claim the command's writes have on `path` (relative to the data
    /// directory): [`Claim::Named`] before [`Claim::Derived`] before [`Claim::Appended`];
    /// `None` when no write set
    /// covers it.
    pub fn claim_on(&self, path: &Path) -> Option<Claim> {
        let dir = path.parent().unwrap_or(Path::new(""));
        let name = path.file_name()?.to_str()?;
        self.writes.iter().filter(|set| set.matches(dir, name)).map(|set| set.claim).min()
    }

    /// May the command write `path` (relative to the data directory)?
    pub fn writes_file(&self, path: &Path) -> bool {
        self.claim_on(path).is_some()
    }

    /// May the command read or write `path` (relative to the data directory)?
    pub fn touches_file(&self, path: &Path) -> bool {
        let dir = path.parent().unwrap_or(Path::new(""));
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
        self.writes_file(path) || self.reads.iter().any(|set| set.matches(dir, name))
    }

    /// Output `index` of `command`, when it is a file: its name (each HLS variant's) and what
    /// its muxer derives from it.
    fn add_output_of(&mut self, command: &ResolvedCommand, index: usize) {
        let (Some(output), Some(OutputTarget::File(path))) =
            (command.command().outputs().get(index), command.outputs().get(index))
        else {
            return;
        };
        for (dir, name) in variant_names(command, index, path) {
            self.add_output(output, &dir, &name);
        }
    }

    /// The file named in option `file` of `command` (each HLS variant's), and what ffmpeg
    /// derives from it.
    fn add_option_file_of(&mut self, command: &ResolvedCommand, file: &OptionFile) {
        let names = match file.output() {
            Some(index) => variant_names(command, index, file.path()),
            None => vec![split(file.path())],
        };
        // With `-strftime 1`, strftime turns `%%` into `%` before the HLS muxer numbers
        // the name (`-hls_flags second_level_segment_index` writes `%%04d` that way):
        // both readings are covered.
        let outputs = command.command().outputs();
        let output = file.output().and_then(|index| outputs.get(index));
        let strftime = output.is_some_and(Output::strftime);
        let literal = option_at(command, file.position()).is_some_and(|opt| takes_literally(output, opt.name()));
        for (dir, name) in names {
            if strftime && file.file_use().naming == Naming::Pattern && name.contains("%%") {
                self.add_option_file(file.file_use(), dir.clone(), name.replace("%%", "%"), literal);
            }
            self.add_option_file(file.file_use(), dir, name, literal);
        }
    }

    /// A file named in an option, `name` in `dir` (for an HLS variant stream, with `%v`
    /// replaced), and what ffmpeg derives from it. `literal`: the muxer writes a pattern
    /// value as that very name ([`takes_literally`]).
    fn add_option_file(&mut self, use_: FileUse, dir: PathBuf, name: String, literal: bool) {
        let fp = self;
        match (use_.access, use_.naming) {
            (Access::ReadDirectory, _) => {
                let mut dir = dir;
                dir.push(name);
                fp.reads.push(FileSet { dir, names: Names::Tree, claim: Claim::Named });
            }
            (Access::Read, Naming::Exact) => {
                fp.reads.push(FileSet { dir, names: Names::Exact(name), claim: Claim::Named });
            }
            (Access::Read, _) => fp.reads.push(FileSet { dir, names: Names::Pattern(name), claim: Claim::Named }),
            (_, Naming::Prefix) => {
                // `-passlogfile`: `"%s-%d.log"` in ffmpeg, the prefix taken literally.
                let log = format!("{}-%d.log", escape(&name));
                for suffix in ["", ".mbtree"] {
                    let read = FileSet {
                        dir: dir.clone(),
                        names: Names::Pattern(format!("{log}{suffix}")),
                        claim: Claim::Derived,
                    };
                    fp.reads.push(read.clone());
                    fp.writes.push(read);
                    fp.derive(&dir, format!("{log}{suffix}.temp"));
                }
            }
            (access, Naming::Suffixed(suffixes)) => {
                // x264/x265 statistics `F`: named by the command, read by the next pass; the
                // library derives `F.temp`, `F.mbtree`, ... from it.
                let derived: Vec<String> = suffixes.iter().map(|suffix| format!("{name}{suffix}")).collect();
                if access != Access::Write {
                    for name in std::iter::once(&name).chain(&derived) {
                        let name = name.clone();
                        fp.reads.push(FileSet { dir: dir.clone(), names: Names::Exact(name), claim: Claim::Named });
                    }
                }
                if access != Access::Read {
                    fp.write(dir.clone(), Names::Exact(name), Claim::Named);
                    for name in derived {
                        fp.write(dir.clone(), Names::Exact(name), Claim::Derived);
                    }
                }
            }
            // Appended to (x265's `csv`): a file that existed before is not the run's.
            (Access::Append, _) => fp.write(dir, Names::Exact(name), Claim::Appended),
            (access, naming) => {
                // A muxer may also take a pattern literally: HLS's `single_file` writes one
                // segment file named exactly `-hls_segment_filename` (`hlsenc.c` numbers names
                // only without it), DASH expands only `$...$` templates in `single_file_name`.
                // When the command makes it do so, the literal name is named by the command
                // like an output (the run's if it changed, even if it existed before: a second
                // run rewrites it, tester finding H1); otherwise the run's only if it did not
                // exist before.
                if naming == Naming::Pattern && access != Access::Read && pattern::is_pattern(&name) {
                    let claim = if literal { Claim::Named } else { Claim::Derived };
                    fp.write(dir.clone(), Names::Exact(name.clone()), claim);
                }
                let names = if naming == Naming::Exact { Names::Exact(name) } else { Names::Pattern(name) };
                // Written by one run and read by the next (none but pass logs today).
                if access == Access::ReadWrite {
                    fp.reads.push(FileSet { dir: dir.clone(), names: names.clone(), claim: Claim::Named });
                }
                fp.write(dir, names, Claim::Named);
            }
        }
    }

    /// An output file and what its muxer derives from its name.
    fn add_output(&mut self, output: &Output, dir: &Path, name: &str) {
        // A name with `%` is a pattern for image2 and the segment muxers, and literal for the
        // others: cover both readings.
        if pattern::is_pattern(name) {
            self.write(dir.to_owned(), Names::Pattern(name.to_owned()), Claim::Named);
        }
        self.write(dir.to_owned(), Names::Exact(name.to_owned()), Claim::Named);
        let muxer = muxer(output);
        // The muxers derive names from the output's name (for an HLS variant stream, with
        // `%v` already replaced).
        let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
        let derived: Vec<String> = match muxer.as_deref() {
            Some("hls") => vec![
                format!("{stem}%s.ts"),
                format!("{stem}%s.m4s"),
                format!("{stem}%s.vtt"),
                format!("{stem}_vtt.m3u8"),
                "init.mp4".to_owned(),
                "init_%d.mp4".to_owned(),
                format!("{name}.key"),
            ],
            Some("dash") => vec![
                "init-stream%s".to_owned(),
                "chunk-stream%s".to_owned(),
                format!("{stem}-stream%d.%s"),
                "media_%d.m3u8".to_owned(),
                "master.m3u8".to_owned(),
            ],
            _ => Vec::new(),
        };
        for name in derived {
            self.derive(dir, name);
        }
    }

    /// A written file set, and its `.tmp` twin (written first and renamed by several muxers).
    fn write(&mut self, dir: PathBuf, names: Names, claim: Claim) {
        let set = FileSet { dir, names, claim };
        let twin = set.tmp_twin();
        self.writes.push(set);
        self.writes.extend(twin);
    }

    /// A derived name pattern and its `.tmp` twin.
    fn derive(&mut self, dir: &Path, name: String) {
        self.write(dir.to_owned(), Names::Pattern(name), Claim::Derived);
    }
}

/// A file set a command may write, and the argument that makes ffmpeg write it
/// ([`Footprint::written_by_argument`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBy {
    /// 1-based position of the argument: an output URL, or an option naming a file.
    pub position: usize,
    /// The argument as written: the URL, or the option with its value (`-passlogfile logs/x`).
    pub argument: String,
    /// The files.
    pub set: FileSet,
}

/// The option of `command` at 1-based `position` (global, input or output).
fn option_at(command: &ResolvedCommand, position: usize) -> Option<&Opt> {
    let parsed = command.command();
    let inputs = parsed.inputs().iter().flat_map(|input| input.options());
    let outputs = parsed.outputs().iter().flat_map(|output| output.options());
    parsed.global_options().iter().chain(inputs).chain(outputs).find(|opt| opt.position() == position)
}

/// The muxer of `output`: forced with `-f`, else `hls` and `dash` guessed from the URL's
/// extension (`.m3u8`, `.mpd`) as ffmpeg does; `None` for the others.
fn muxer(output: &Output) -> Option<String> {
    output.format().map(str::to_ascii_lowercase).or_else(|| {
        let ext = Path::new(output.url()).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "m3u8" => Some("hls".to_owned()),
            "mpd" => Some("dash".to_owned()),
            _ => None,
        }
    })
}

/// Whether the muxer of `output` writes the pattern given in its option `option` as that very
/// name, one file: `-hls_segment_filename` with `single_file` in `-hls_flags` (`hlsenc.c`
/// numbers segment names only without it), and DASH's `single_file_name` (`dash_init()` in
/// `dashenc.c` turns `single_file` on when it is given, and expands only `$...$` templates).
fn takes_literally(output: Option<&Output>, option: &str) -> bool {
    match option {
        "single_file_name" => true,
        "hls_segment_filename" => output
            .and_then(|o| o.option("hls_flags"))
            .and_then(Opt::value)
            .is_some_and(|flags| has_flag(flags, "single_file")),
        _ => false,
    }
}

/// Whether `flag` is on after an `AV_OPT_TYPE_FLAGS` option whose default has it off is set to
/// `value`, as `set_string_number()` in `libavutil/opt.c` (ffmpeg 5.1) reads it: the first
/// name without a sign sets the value to that flag alone, `+name` adds a flag, `-name`
/// removes one.
fn has_flag(value: &str, flag: &str) -> bool {
    let mut on = false;
    let mut rest = value;
    while !rest.is_empty() {
        let (sign, tail) = match rest.as_bytes()[0] {
            b'+' | b'-' => (Some(rest.as_bytes()[0]), &rest[1..]),
            _ => (None, rest),
        };
        let end = tail.find(['+', '-']).unwrap_or(tail.len());
        let name = &tail[..end];
        match sign {
            None => on = name == flag,
            Some(b'+') if name == flag => on = true,
            Some(b'-') if name == flag => on = false,
            _ => {}
        }
        rest = &tail[end..];
    }
    on
}

/// Is `output` written by the HLS muxer (`-f hls`, or a `.m3u8` URL without `-f`)?
pub(crate) fn is_hls_output(output: &Output) -> bool {
    muxer(output).as_deref() == Some("hls")
}

/// `path` (a file of output `index`) as (directory, name) pairs: one per variant stream, with
/// `%v` replaced, when the output is an HLS output and `path` holds `%v`; else `path` itself.
fn variant_names(command: &ResolvedCommand, index: usize, path: &ResolvedPath) -> Vec<(PathBuf, String)> {
    match command.hls_variants(index) {
        Some(variants) if pattern::has_hls_variant(&path.relative().to_string_lossy()) => {
            let relative = path.relative().to_string_lossy();
            variants
                .iter()
                .map(|variant| {
                    let expanded = PathBuf::from(pattern::expand_hls_variant(&relative, variant));
                    let dir = expanded.parent().unwrap_or(Path::new("")).to_owned();
                    let name = expanded.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    (dir, name)
                })
                .collect()
        }
        _ => vec![split(path)],
    }
}

/// `path`'s directory relative to the data directory, and its file name.
fn split(path: &ResolvedPath) -> (PathBuf, String) {
    let relative = path.relative();
    let dir = relative.parent().unwrap_or(Path::new("")).to_owned();
    let name = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, name)
}

/// `name` as a pattern matching exactly itself.
fn escape(name: &str) -> Cow<'_, str> {
    if name.contains(['%', '$']) { Cow::Owned(name.replace('%', "%%").replace('$', "$$")) } else { Cow::Borrowed(name) }
}

fn path_text(path: &Path) -> Cow<'_, str> {
    path.to_string_lossy()
}

fn has_pattern(dir: &Path) -> bool {
    pattern::is_pattern(&path_text(dir))
}
