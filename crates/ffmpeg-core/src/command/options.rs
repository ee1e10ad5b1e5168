//! ffmpeg 5.1's own option table, reduced to what splitting a command line needs: whether an
//! option takes a value and whether it is global or per-file.
//!
//! Source: `options[]` in `fftools/ffmpeg_opt.c` plus `CMDUTILS_COMMON_OPTIONS` in
//! `fftools/cmdutils.h` (ffmpeg 5.1, as built by Debian 12 with VAAPI and QSV), read by
//! `split_commandline()` and `add_opt()` in `fftools/cmdutils.c`:
//!
//! - `HAS_ARG` options take the next argument, whatever it looks like ([`Kind::Value`]);
//! - options without `HAS_ARG` take none ([`Kind::Flag`], [`Kind::Bool`]);
//! - `OPT_EXIT` options (`-h`, `-version`, `-formats`, ...) take the next argument if there is
//!   one ([`Kind::Exit`]);
//! - `OPT_BOOL` options also have a value-less `-no<name>` form ([`Kind::Bool`]);
//!   `-autorotate` and `-autoscale` are `OPT_BOOL | HAS_ARG`: the plain form takes a value
//!   (`-autorotate 0`), the `-no` form does not ([`Kind::BoolValue`]);
//! - an option is global unless it has `OPT_PERFILE`, `OPT_SPEC` or `OPT_OFFSET` (`add_opt`).
//!
//! Every entry was checked against the installed `ffmpeg` 5.1.9 binary: `ffmpeg -v debug
//! -<name> NEXT` logs whether `NEXT` was taken as the value ("matched as option 'an' ... with
//! argument '1'"), `ffmpeg -v debug out.nut -<name> [value]` warns "Trailing option(s)" exactly
//! for per-file options, and `-no<name>` is accepted exactly for the `OPT_BOOL` ones.
//! Options not in this table are codec, format or filter private options (AVOptions), which
//! `split_commandline` hands to `opt_default()` with the next argument: they always take a
//! value and belong to the next input or output.

/// How an option consumes arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Takes the next argument as its value (`HAS_ARG`).
    Value,
    /// Takes no value and has no `-no` form (`-report`, `-vstats`).
    Flag,
    /// `OPT_BOOL`: takes no value; `-no<name>` is the same option set to 0.
    Bool,
    /// `OPT_BOOL | HAS_ARG`: `-<name> VALUE`, or the value-less `-no<name>`.
    BoolValue,
    /// `OPT_EXIT`: prints something and exits; takes the next argument if there is one.
    Exit,
}

/// Where an option applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Applies to the whole program wherever it appears.
    Global,
    /// Applies to the next input (`-i URL`) or output.
    PerFile,
}

/// One entry of ffmpeg's option table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionDef {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) scope: Scope,
}

const fn def(name: &'static str, kind: Kind, scope: Scope) -> OptionDef {
    OptionDef { name, kind, scope }
}

use Kind::{Bool, BoolValue, Exit, Flag, Value};
use Scope::{Global, PerFile};

/// ffmpeg 5.1's options, sorted by name (byte order) for binary search. `-i` is not here: it is
/// the input group separator (`groups[]` in `ffmpeg_opt.c`), handled by the parser.
static OPTIONS: &[OptionDef] = &[
    def("-help", Exit, Global),
    def("?", Exit, Global),
    def("L", Exit, Global),
    def("ab", Value, PerFile),
    def("abort_on", Value, Global),
    def("absf", Value, PerFile),
    def("ac", Value, PerFile),
    def("accurate_seek", Bool, PerFile),
    def("acodec", Value, PerFile),
    def("adrift_threshold", Value, Global),
    def("af", Value, PerFile),
    def("aframes", Value, PerFile),
    def("an", Bool, PerFile),
    def("apad", Value, PerFile),
    def("apre", Value, PerFile),
    def("aq", Value, PerFile),
    def("ar", Value, PerFile),
    def("aspect", Value, PerFile),
    def("async", Value, Global),
    def("atag", Value, PerFile),
    def("attach", Value, PerFile),
    def("auto_conversion_filters", Bool, Global),
    def("autorotate", BoolValue, PerFile),
    def("autoscale", BoolValue, PerFile),
    def("b", Value, PerFile),
    def("benchmark", Bool, Global),
    def("benchmark_all", Bool, Global),
    def("bitexact", Bool, PerFile),
    def("bits_per_raw_sample", Value, PerFile),
    def("bsf", Value, PerFile),
    def("bsfs", Exit, Global),
    def("buildconf", Exit, Global),
    def("c", Value, PerFile),
    def("canvas_size", Value, PerFile),
    def("ch_layout", Value, PerFile),
    def("channel_layout", Value, PerFile),
    def("chroma_intra_matrix", Value, PerFile),
    def("codec", Value, PerFile),
    def("codecs", Exit, Global),
    def("colors", Exit, Global),
    def("copy_unknown", Bool, Global),
    def("copyinkf", Bool, PerFile),
    def("copypriorss", Value, PerFile),
    def("copytb", Value, Global),
    def("copyts", Bool, Global),
    def("cpucount", Value, Global),
    def("cpuflags", Value, Global),
    def("dcodec", Value, PerFile),
    def("debug_ts", Bool, Global),
    def("decoders", Exit, Global),
    def("demuxers", Exit, Global),
    def("devices", Exit, Global),
    def("dframes", Value, PerFile),
    def("discard", Value, PerFile),
    def("disposition", Value, PerFile),
    def("dispositions", Exit, Global),
    def("dn", Bool, PerFile),
    def("dts_delta_threshold", Value, Global),
    def("dts_error_threshold", Value, Global),
    def("dump", Bool, Global),
    def("dump_attachment", Value, PerFile),
    def("enc_time_base", Value, PerFile),
    def("encoders", Exit, Global),
    def("f", Value, PerFile),
    def("filter", Value, PerFile),
    def("filter_complex", Value, Global),
    def("filter_complex_script", Value, Global),
    def("filter_complex_threads", Value, Global),
    def("filter_hw_device", Value, Global),
    def("filter_script", Value, PerFile),
    def("filter_threads", Value, Global),
    def("filters", Exit, Global),
    def("find_stream_info", Bool, PerFile),
    def("fix_sub_duration", Bool, PerFile),
    def("force_fps", Bool, PerFile),
    def("force_key_frames", Value, PerFile),
    def("formats", Exit, Global),
    def("fpre", Value, PerFile),
    def("fps_mode", Value, PerFile),
    def("fpsmax", Value, PerFile),
    def("frame_drop_threshold", Value, Global),
    def("frames", Value, PerFile),
    def("fs", Value, PerFile),
    def("guess_layout_max", Value, PerFile),
    def("h", Exit, Global),
    def("help", Exit, Global),
    def("hex", Bool, Global),
    def("hide_banner", Bool, Global),
    def("hwaccel", Value, PerFile),
    def("hwaccel_device", Value, PerFile),
    def("hwaccel_output_format", Value, PerFile),
    def("hwaccels", Exit, Global),
    def("ignore_unknown", Bool, Global),
    def("init_hw_device", Value, Global),
    def("inter_matrix", Value, PerFile),
    def("intra_matrix", Value, PerFile),
    def("isync", Value, PerFile),
    def("itsoffset", Value, PerFile),
    def("itsscale", Value, PerFile),
    def("lavfi", Value, Global),
    def("layouts", Exit, Global),
    def("loglevel", Value, Global),
    def("map", Value, PerFile),
    def("map_channel", Value, PerFile),
    def("map_chapters", Value, PerFile),
    def("map_metadata", Value, PerFile),
    def("max_alloc", Value, Global),
    def("max_error_rate", Value, Global),
    def("max_muxing_queue_size", Value, PerFile),
    def("metadata", Value, PerFile),
    def("muxdelay", Value, PerFile),
    def("muxers", Exit, Global),
    def("muxing_queue_data_threshold", Value, PerFile),
    def("muxpreload", Value, PerFile),
    def("n", Bool, Global),
    def("pass", Value, PerFile),
    def("passlogfile", Value, PerFile),
    def("pix_fmt", Value, PerFile),
    def("pix_fmts", Exit, Global),
    def("pre", Value, PerFile),
    def("profile", Value, PerFile),
    def("program", Value, PerFile),
    def("progress", Value, Global),
    def("protocols", Exit, Global),
    def("psnr", Bool, Global),
    def("q", Value, PerFile),
    def("qphist", Bool, Global),
    def("qscale", Value, PerFile),
    def("qsv_device", Value, Global),
    def("r", Value, PerFile),
    def("rc_override", Value, PerFile),
    def("re", Bool, PerFile),
    def("readrate", Value, PerFile),
    def("recast_media", Bool, Global),
    def("reinit_filter", Value, PerFile),
    def("report", Flag, Global),
    def("s", Value, PerFile),
    def("sample_fmt", Value, PerFile),
    def("sample_fmts", Exit, Global),
    def("scodec", Value, PerFile),
    def("sdp_file", Value, Global),
    def("seek_timestamp", Value, PerFile),
    def("shortest", Bool, PerFile),
    def("sinks", Exit, Global),
    def("sn", Bool, PerFile),
    def("sources", Exit, Global),
    def("spre", Value, PerFile),
    def("ss", Value, PerFile),
    def("sseof", Value, PerFile),
    def("stag", Value, PerFile),
    def("start_at_zero", Bool, Global),
    def("stats", Bool, Global),
    def("stats_period", Value, Global),
    def("stdin", Bool, Global),
    def("stream_loop", Value, PerFile),
    def("streamid", Value, PerFile),
    def("t", Value, PerFile),
    def("tag", Value, PerFile),
    def("target", Value, PerFile),
    def("thread_queue_size", Value, PerFile),
    def("time_base", Value, PerFile),
    def("timecode", Value, PerFile),
    def("timelimit", Value, Global),
    def("timestamp", Value, PerFile),
    def("to", Value, PerFile),
    def("top", Value, PerFile),
    def("v", Value, Global),
    def("vaapi_device", Value, Global),
    def("vbsf", Value, PerFile),
    def("vcodec", Value, PerFile),
    def("version", Exit, Global),
    def("vf", Value, PerFile),
    def("vframes", Value, PerFile),
    def("vn", Bool, PerFile),
    def("vol", Value, Global),
    def("vpre", Value, PerFile),
    def("vstats", Flag, Global),
    def("vstats_file", Value, Global),
    def("vstats_version", Value, Global),
    def("vsync", Value, Global),
    def("vtag", Value, PerFile),
    def("xerror", Bool, Global),
    def("y", Bool, Global),
];

/// The table entry for `name` (without `-` and stream specifier), if ffmpeg itself defines it.
pub(crate) fn find(name: &str) -> Option<&'static OptionDef> {
    OPTIONS.binary_search_by(|d| d.name.cmp(name)).ok().map(|i| &OPTIONS[i])
}

/// Every name in the table, sorted.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().map(|d| d.name)
}

/// The boolean option that `-<name>` switches off, for `no`-prefixed names (`nostdin` ->
/// `stdin`), as `split_commandline` tries after the table and the AVOptions.
pub(crate) fn find_negated(name: &str) -> Option<&'static OptionDef> {
    let rest = name.strip_prefix("no")?;
    find(rest).filter(|d| matches!(d.kind, Kind::Bool | Kind::BoolValue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(OPTIONS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn lookups() {
        assert_eq!(find("an").map(|d| d.kind), Some(Kind::Bool));
        assert_eq!(find("-help").map(|d| d.kind), Some(Kind::Exit));
        assert_eq!(find("?").map(|d| d.kind), Some(Kind::Exit));
        assert_eq!(find("filter_complex").map(|d| d.scope), Some(Scope::Global));
        assert!(find("crf").is_none());
        assert!(find("i").is_none());
        assert_eq!(find_negated("nostdin").map(|d| d.name), Some("stdin"));
        assert_eq!(find_negated("noautorotate").map(|d| d.name), Some("autorotate"));
        assert!(find_negated("noreport").is_none());
        assert!(find_negated("no").is_none());
    }
}
