//! The length of concat-list inputs (`-f concat -i list.txt`), which ffmpeg's banner gives as
//! `N/A`: read and summed beside the run, so percent is known ([`crate::runner::RunSpec`]'s
//! `input_lengths`).

use std::sync::Arc;

use ffmpeg_core::sandbox::{ResolvedCommand, ResolvedPath, Sandbox};
use tokio::sync::watch;

use super::{Jobs, blocking};

/// The largest concat list whose entries are summed for percent ([`Jobs`] reads it before
/// the run's progress can use it), in bytes.
pub const CONCAT_LIST_MAX_BYTES: u64 = 1 << 20;

/// The most entries of one concat list probed with ffprobe for their durations; a list with
/// more entries lacking a `duration` line leaves percent unknown.
pub const CONCAT_LIST_MAX_PROBES: usize = 64;

impl Jobs {
    /// The durations of `command`'s concat-list inputs (`-f concat -i list.txt`), which
    /// ffmpeg's banner gives as `N/A` unless every entry has a `duration` line: each list read
    /// (at most [`CONCAT_LIST_MAX_BYTES`]) and summed entry by entry, the files without a
    /// `duration` or `outpoint` probed with ffprobe (contained in the sandbox, as
    /// [`Jobs::probe_media`], in the run's `sandbox`: with the files in a bucket, the stage
    /// that already holds them; at most [`CONCAT_LIST_MAX_PROBES`] per list). Sent on `tx` by
    /// input index once known; a list whose length cannot be known stays `None` (percent
    /// stays null).
    pub(super) async fn concat_lengths(
        &self,
        command: &ResolvedCommand,
        sandbox: &Arc<Sandbox>,
        tx: watch::Sender<Vec<Option<f64>>>,
    ) {
        let lists: Vec<(usize, ResolvedPath)> = command
            .command()
            .inputs()
            .iter()
            .zip(command.inputs())
            .enumerate()
            .filter(|(_, (input, _))| input.format().is_some_and(|f| f.eq_ignore_ascii_case("concat")))
            .filter_map(|(index, (_, source))| Some((index, source.file()?.clone())))
            .collect();
        if lists.is_empty() {
            return;
        }
        let mut lengths = vec![None; command.inputs().len()];
        for (index, list) in lists {
            lengths[index] = self.concat_list_length(&list, sandbox).await;
        }
        tx.send_replace(lengths);
    }

    /// The length in seconds of the concat list at `list`, if it can be known.
    async fn concat_list_length(&self, list: &ResolvedPath, sandbox: &Arc<Sandbox>) -> Option<f64> {
        let path = list.as_path().to_owned();
        let text = blocking(move || {
            use std::io::Read as _;
            let mut text = String::new();
            let file = std::fs::File::open(path).ok()?;
            file.take(CONCAT_LIST_MAX_BYTES + 1).read_to_string(&mut text).ok()?;
            (text.len() as u64 <= CONCAT_LIST_MAX_BYTES).then_some(text)
        })
        .await?;
        let entries = ffmpeg_core::duration::concat::parse_concat_list(&text);
        let probes = entries.iter().filter(|entry| entry.needs_file_duration()).count();
        if entries.is_empty() || probes > CONCAT_LIST_MAX_PROBES {
            return None;
        }
        // ffmpeg opens a relative entry relative to the list's directory.
        let dir = list.relative().parent().unwrap_or(std::path::Path::new(""));
        let mut total = 0.0;
        for entry in &entries {
            let duration = if entry.needs_file_duration() {
                let path = dir.join(&entry.file);
                self.media.probe(sandbox, path.to_str()?).await.ok()?.duration_seconds
            } else {
                None
            };
            total += entry.length(duration)?;
        }
        Some(total)
    }
}
