//! Path resolution: a relative path is normalised lexically, walked from the data directory
//! (symlinks must stay inside it) and becomes a [`ResolvedPath`], the only way a path reaches
//! ffmpeg.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::options::Side;
use super::{PathProblem, Sandbox, SandboxError};
use crate::policy::{Access, FileUse, Naming, PathBase};

/// A path inside the sandbox's data directory. Only [`Sandbox::resolve`] builds one.
///
/// Its text is valid UTF-8 by construction: the sandbox refuses a data directory, and a path
/// leading through a symlink, whose name is not ([`PathProblem::NotUtf8`]), so what reaches
/// ffmpeg names exactly the file that was checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolvedPath {
    /// Canonical absolute path (symlinks inside the data directory resolved).
    absolute: String,
    /// `absolute` without the data directory and its `/`.
    relative: String,
}

impl ResolvedPath {
    /// The absolute path inside the data directory.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.absolute)
    }
    /// The absolute path inside the data directory, as text (exactly [`ResolvedPath::as_path`]).
    pub fn as_str(&self) -> &str {
        &self.absolute
    }
    /// The path relative to the data directory, as jobs report it.
    pub fn relative(&self) -> &Path {
        Path::new(&self.relative)
    }
    /// The `file:` URL handed to ffmpeg, e.g. `file:/data/out/a.mp4`. The `file:` prefix makes
    /// ffmpeg's protocol lookup (`url_find_protocol()` in `libavformat/avio.c`) choose the
    /// file protocol whatever the name contains (`-part6.mp4`, `x:y`), and printf-style
    /// patterns still work: the image2 and segment muxers expand `%03d` in the whole URL
    /// (checked with ffmpeg 5.1: `file:/d/t%03d.png` writes `/d/t001.png`, ...; an HLS
    /// playlist `file:/d/index.m3u8` gets its segments `/d/index0.ts`, ... beside it).
    pub fn to_file_url(&self) -> String {
        format!("file:{}", self.absolute)
    }
}

/// What a path argument must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    File,
    /// A file the job writes: as [`Want::File`], and its own name may not be a symbolic link
    /// ([`PathProblem::WrittenLink`]).
    Written,
    Directory,
    /// The prefix of names ffmpeg makes by appending to it (`-passlogfile PREFIX`:
    /// `PREFIX-0.log`, [`Naming::Prefix`]). ffmpeg never opens the path itself, so whatever is
    /// there (a directory, a link, nothing) is no matter, and its last component is kept as
    /// written, a link there not followed: ffmpeg appends to the text, and the names it makes
    /// are checked for links right before the run. The directories above it resolve as for
    /// [`Want::File`]; the data directory itself, or a trailing `/`, is no prefix (ffmpeg would
    /// append to the directory's own name, beside it).
    Prefix,
}

impl Want {
    /// What a file-valued option's value must be: a directory for [`Access::ReadDirectory`]; a
    /// prefix ([`Want::Prefix`]) for [`Naming::Prefix`]; a written file ([`Want::Written`])
    /// when the job writes the file the value names itself (not a pattern of names, whose
    /// expansions the worker checks for links right before the run); else a file.
    pub(super) fn for_use(file_use: FileUse) -> Want {
        match (file_use.access, file_use.naming) {
            (Access::ReadDirectory, _) => Want::Directory,
            (_, Naming::Prefix) => Want::Prefix,
            (Access::Write | Access::ReadWrite | Access::Append, Naming::Exact | Naming::Suffixed(_)) => Want::Written,
            _ => Want::File,
        }
    }
}

impl Sandbox {
    /// Resolves one path argument found at 1-based `position`.
    ///
    /// # Errors
    /// [`SandboxError::Absolute`], [`SandboxError::Escapes`], [`SandboxError::Protocol`],
    /// [`SandboxError::NotAFile`], [`SandboxError::Denied`].
    ///
    /// In order: empty, NUL bytes -> `NotAFile`; a control character -> `Path`
    /// ([`PathProblem::ControlCharacter`]); `-` -> `Protocol`; a `:` before the first
    /// `/` (`http:`, `concat:`, `pipe:`, `fd:`, `file:`, `c:`) or a `subfile,` prefix ->
    /// `Protocol` (a stricter form of ffmpeg's scheme detection; write `./a:b.mp4` for a file
    /// named `a:b.mp4`); a leading `/` -> `Absolute`; a trailing `/` -> `NotAFile`; `..` above
    /// the data directory, or a symlink (dangling or leading outside) -> `Escapes`; the data
    /// directory itself or an existing non-regular file -> `NotAFile`; a denied path ->
    /// `Denied`. Printf-style patterns (`thumbs/t%03d.png`) are ordinary names here.
    pub fn resolve(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        self.resolve_path(argument, Want::File).map_err(|problem| problem.at(position, argument))
    }

    /// Resolves a path that names a file on its own (not inside a command), as the files API
    /// does: the rules of [`Sandbox::resolve`], with the problem itself as the error.
    ///
    /// # Errors
    /// The [`PathProblem`] that [`Sandbox::resolve`] would report at a position.
    pub fn resolve_file_path(&self, path: &str) -> Result<ResolvedPath, PathProblem> {
        self.resolve_path(path, Want::File)
    }

    /// Resolves a path that names a directory (the data directory itself for `""`), by the
    /// same rules; an existing path that is not a directory is [`PathProblem::NotADirectory`].
    ///
    /// # Errors
    /// As [`Sandbox::resolve_file_path`].
    pub fn resolve_directory_path(&self, path: &str) -> Result<ResolvedPath, PathProblem> {
        if path.is_empty() {
            return self.resolve_path(".", Want::Directory);
        }
        self.resolve_path(path, Want::Directory)
    }

    /// Resolves a path ffmpeg (or ffprobe) will open as an input, found at 1-based `position`:
    /// [`Sandbox::resolve`], and refused as [`SandboxError::Path`] ([`PathProblem::Glob`]) when
    /// it holds a glob pattern the image2 demuxer would expand (`%*`, `%?`, `%[`, ...) to
    /// names the sandbox never saw. Every `-i` of [`Sandbox::resolve_command`] goes through it.
    ///
    /// # Errors
    /// As [`Sandbox::resolve`], and [`SandboxError::Path`] for a glob pattern.
    pub fn resolve_input(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        if has_glob(argument) {
            return Err(PathProblem::Glob.at(position, argument));
        }
        self.resolve(argument, position)
    }

    /// Resolves a path ffmpeg will write as an output, found at 1-based `position`:
    /// [`Sandbox::resolve`], and refused as [`SandboxError::Path`] ([`PathProblem::WrittenLink`],
    /// rule `symbolic-link`) when its own name is a symbolic link leading to a place inside the
    /// data directory (one leading out is [`SandboxError::Escapes`], as everywhere). ffmpeg
    /// would open the link's target by its own name: the muxer is chosen from that name
    /// (`link.mp4 -> pl.M3U8` writes an HLS playlist, and `pl0.ts` beside it), and what it
    /// writes is not the file the client named. Symbolic links to directories on the way are
    /// followed (the file's own name, which picks the muxer, stays as written). Every output
    /// file of [`Sandbox::resolve_command`] goes through it, and so does every file an option
    /// writes under its own name (`-segment_list`, whose list type is chosen from its name).
    ///
    /// ```
    /// use ffmpeg_core::sandbox::Sandbox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("pl.m3u8"), "#EXTM3U\n")?;
    /// std::os::unix::fs::symlink("pl.m3u8", dir.path().join("link.mp4"))?;
    /// let sandbox = Sandbox::new(dir.path())?;
    /// let refused = sandbox.resolve_output("link.mp4", 3).unwrap_err();
    /// assert_eq!(refused.rule().as_str(), "symbolic-link");
    /// assert!(refused.to_string().starts_with("argument 3 `link.mp4`: a symbolic link"), "{refused}");
    /// assert_eq!(sandbox.resolve("link.mp4", 2)?.relative(), std::path::Path::new("pl.m3u8"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sandbox::resolve`], and [`SandboxError::Path`] for a symbolic link.
    pub fn resolve_output(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        self.resolve_path(argument, Want::Written).map_err(|problem| problem.at(position, argument))
    }

    /// [`Sandbox::resolve`] without the position; for [`Want::Directory`], directories
    /// (and the data directory itself, and a trailing `/`) are what is wanted.
    pub(super) fn resolve_path(&self, argument: &str, want: Want) -> Result<ResolvedPath, PathProblem> {
        if argument.is_empty() || argument.contains('\0') {
            return Err(PathProblem::NotAFile);
        }
        if let Some(c) = argument.chars().find(|c| c.is_control()) {
            return Err(PathProblem::ControlCharacter(c));
        }
        if let Some(scheme) = protocol_prefix(argument) {
            return Err(PathProblem::Protocol(scheme.to_owned()));
        }
        if argument.starts_with('/') {
            return Err(PathProblem::Absolute);
        }
        if argument.ends_with('/') && want != Want::Directory {
            return Err(PathProblem::NotAFile);
        }

        // Lexical normalisation: drop `.` and empty components, apply `..`.
        let mut parts: Vec<&str> = Vec::new();
        for part in argument.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathProblem::Escapes);
                    }
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() && want != Want::Directory {
            return Err(PathProblem::NotAFile);
        }
        if parts.iter().any(|part| self.reserved_name(part)) {
            return Err(PathProblem::Denied);
        }

        // Walk from the root; `current` stays canonical while its components exist.
        let mut current = self.root.clone();
        let mut exists = true;
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            current.push(part);
            // A prefix's own name is text that ffmpeg appends to: nothing there is looked at.
            if !exists || (want == Want::Prefix && index + 1 == count) {
                continue;
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(&current) {
                    // ffmpeg would open the link by its target's name: the muxer (or a
                    // `-segment_list` type) chosen from that name, the files it derives
                    // (`pl0.ts`) beside the target, outside the job's footprint.
                    Ok(target) if target.starts_with(&self.root) && want == Want::Written && index + 1 == count => {
                        return Err(PathProblem::WrittenLink);
                    }
                    Ok(target) if target.starts_with(&self.root) => current = target,
                    // Leads outside, or dangles (writing through it would create the target).
                    _ => return Err(PathProblem::Escapes),
                },
                Ok(_) => {}
                // Not there (or not searchable: ffmpeg, running as the same user, fails too);
                // nothing below it can be a symlink.
                Err(_) => exists = false,
            }
        }

        match want {
            Want::File | Want::Written => {
                if current == self.root {
                    return Err(PathProblem::NotAFile);
                }
                if exists && fs::metadata(&current).is_ok_and(|meta| !meta.is_file()) {
                    return Err(PathProblem::NotAFile);
                }
            }
            Want::Directory => {
                if exists && fs::metadata(&current).is_ok_and(|meta| !meta.is_dir()) {
                    return Err(PathProblem::NotADirectory);
                }
            }
            Want::Prefix => {
                if current == self.root {
                    return Err(PathProblem::NotAFile);
                }
            }
        }
        if self.denied.iter().any(|denied| current.starts_with(denied)) {
            return Err(PathProblem::Denied);
        }
        let relative = match current.strip_prefix(&self.root) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => return Err(PathProblem::Escapes),
        };
        // A symbolic link may lead to a reserved name the client did not write.
        if relative.components().any(|part| part.as_os_str().to_str().is_some_and(|name| self.reserved_name(name))) {
            return Err(PathProblem::Denied);
        }
        // The root and every component the client wrote are UTF-8; a symlink's target may not be.
        match (current.into_os_string().into_string(), relative.into_os_string().into_string()) {
            (Ok(absolute), Ok(relative)) => Ok(ResolvedPath { absolute, relative }),
            _ => Err(PathProblem::NotUtf8),
        }
    }

    /// Whether `name` (one path component) starts with a prefix put off limits with
    /// [`Sandbox::deny_names_starting_with`].
    fn reserved_name(&self, name: &str) -> bool {
        self.denied_name_prefixes.iter().any(|prefix| name.starts_with(prefix.as_str()))
    }

    /// When `path` (relative to the data directory) leads through a symbolic link that points
    /// nowhere, to a place inside the data directory: that link, relative to the data
    /// directory. [`Sandbox::resolve`] refuses every path through a dangling link as escaping
    /// (writing through one would create its target, wherever it is); a reader can say instead
    /// that the file is missing, and name the link. `None` for anything else, a link leading
    /// out of the data directory or to another dangling link included. Reads links: blocking.
    ///
    /// ```
    /// use ffmpeg_core::sandbox::Sandbox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// std::os::unix::fs::symlink("missing", dir.path().join("clips"))?;
    /// std::os::unix::fs::symlink("/nowhere", dir.path().join("out"))?;
    /// let sandbox = Sandbox::new(dir.path())?;
    /// assert!(sandbox.resolve_file_path("clips/a.mp4").is_err());
    /// assert_eq!(sandbox.dangling_link_inside("clips/a.mp4"), Some("clips".into()));
    /// assert_eq!(sandbox.dangling_link_inside("out/a.mp4"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dangling_link_inside(&self, path: &str) -> Option<PathBuf> {
        // `..` applies to the text, as in `resolve`.
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                part => parts.push(part),
            }
        }
        let mut current = self.root.clone();
        for part in parts {
            current.push(part);
            let meta = fs::symlink_metadata(&current).ok()?;
            if !meta.file_type().is_symlink() {
                continue;
            }
            match fs::canonicalize(&current) {
                Ok(target) if target.starts_with(&self.root) => current = target,
                Ok(_) => return None,
                Err(_) => {
                    // The parent is canonical; the target is read as the kernel would from it.
                    let target = current.parent()?.join(fs::read_link(&current).ok()?);
                    let lands = canonicalize_existing_prefix(&target)?;
                    // The existing part is canonical: a link after it dangles too (a chain).
                    let chained = lands.ancestors().any(|a| fs::symlink_metadata(a).is_ok_and(|m| m.is_symlink()));
                    let inside = lands.starts_with(&self.root) && !chained && fs::symlink_metadata(&lands).is_err();
                    return inside.then(|| current.strip_prefix(&self.root).ok().map(Path::to_path_buf)).flatten();
                }
            }
        }
        None
    }

    /// Resolves a file-valued option's value for `file_use`.
    pub(super) fn resolve_file(
        &self,
        value: &str,
        file_use: FileUse,
        side: Side<'_>,
    ) -> Result<ResolvedPath, PathProblem> {
        let want = Want::for_use(file_use);
        match file_use.base {
            PathBase::DataDirectory => self.resolve_path(value, want),
            PathBase::OutputDirectory => {
                // ffmpeg joins the value to the output's directory as text: refuse what could
                // leave it lexically, then resolve the joined path (symlinks included).
                if value.is_empty() || value.contains('\0') {
                    return Err(PathProblem::NotAFile);
                }
                if let Some(scheme) = protocol_prefix(value) {
                    return Err(PathProblem::Protocol(scheme.to_owned()));
                }
                if value.starts_with('/') {
                    return Err(PathProblem::Absolute);
                }
                if value.split('/').any(|part| part == "..") {
                    return Err(PathProblem::Parent);
                }
                let dir = match side {
                    Side::Output(_, dir) => dir,
                    Side::Global | Side::Input => Path::new(""),
                };
                let joined =
                    if dir.as_os_str().is_empty() { value.to_owned() } else { format!("{}/{value}", dir.display()) };
                self.resolve_path(&joined, want)
            }
        }
    }
}

/// Does an input path hold a glob pattern as the image2 demuxer sees one (`is_glob()` in
/// `libavformat/img2dec.c`: a `%` followed by one of `*?[]{}`)? Checked with ffmpeg 5.1:
/// `-i 'dir/ln%*/img%*.png'` globs (through symlinks) with the default `glob_sequence`.
pub(super) fn has_glob(path: &str) -> bool {
    path.as_bytes().windows(2).any(|w| w[0] == b'%' && b"*?[]{}".contains(&w[1]))
}

/// The protocol (`http:`) or pseudo-protocol prefix of `argument`, if it has one: `-`, a `:`
/// before the first `/`, or `subfile,` (ffmpeg's `subfile,,start,N,end,M,:URL` form).
pub(super) fn protocol_prefix(argument: &str) -> Option<&str> {
    if argument == "-" {
        return Some("-");
    }
    let first_segment = argument.split('/').next().unwrap_or(argument);
    if let Some(colon) = first_segment.find(':') {
        return Some(&argument[..=colon]);
    }
    argument.starts_with("subfile,").then_some("subfile,")
}

/// `path` with its longest existing ancestor canonicalised and the rest appended; `None` if a
/// missing component is `..` or nothing of it exists.
pub(super) fn canonicalize_existing_prefix(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(mut canonical) = fs::canonicalize(existing) {
            for part in rest.iter().rev() {
                canonical.push(part);
            }
            return Some(canonical);
        }
        match existing.components().next_back()? {
            Component::Normal(name) => rest.push(name.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
        existing = existing.parent()?;
    }
}
