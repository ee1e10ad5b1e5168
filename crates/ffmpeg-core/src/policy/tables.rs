//! The default policy as data: one row per option, filter and format that the default
//! [`Policy`](super::Policy) treats specially, each with the reason shown to clients and in
//! `docs/security.md`.
//!
//! Sources, all checked against the installed `ffmpeg` 5.1.9 (Debian 12):
//!
//! - ffmpeg's own options: `options[]` in `fftools/ffmpeg_opt.c` and `CMDUTILS_COMMON_OPTIONS`
//!   (`ffmpeg -h full`, top sections); every one of them has a row here (a test compares the
//!   rows with [`Command::known_option_names`](crate::command::Command::known_option_names)).
//! - AVOptions of muxers, demuxers, protocols and codecs that name files, widen whitelists or
//!   nest further options: the `<string>` and `<dictionary>` options of `ffmpeg -h full`.
//! - Filters that open files, sockets or code: the `<string>` options of every filter in
//!   `ffmpeg -h full`. Positions are the options' indexes among the filter's shorthand options
//!   (constants and aliases skipped, as `process_options()` in `libavfilter/avfilter.c` counts
//!   them), checked with `ffmpeg -v debug`, which logs "Setting 'textfile' to value ...".
//! - Demuxers and muxers: `ffmpeg -demuxers`, `ffmpeg -muxers`, `ffmpeg -devices`.

use super::{
    Access, EncoderParams, FileUse, FilterOptionCheck, FilterOptionRule, KeySpelling, Naming, NotAFile,
    OptionTreatment, ParamDefault, ParamFile, ParamSyntax, PathBase,
};

use Access::{Append, Read, ReadDirectory, ReadWrite, Write};
use Naming::{Exact, Pattern, Prefix, Suffixed};
use OptionTreatment::{
    Allowed, File, FilterGraph, Forbidden, Format, LogLevel, NestedOptions, OnlyValues, PresetName, StreamMap,
};
use PathBase::{DataDirectory, OutputDirectory};

/// The values of `-strftime_mkdir` (an `AV_OPT_TYPE_BOOL`) that leave it off.
const STRFTIME_MKDIR_OFF: &[&str] = crate::command::BOOL_OFF;

const fn data(access: Access, naming: Naming) -> FileUse {
    FileUse { access, base: DataDirectory, naming }
}

const fn beside_output(access: Access, naming: Naming) -> FileUse {
    FileUse { access, base: OutputDirectory, naming }
}

const NOT_A_JOB: &str = "prints information and exits: not a job";
const HW_DEVICE: &str = "opens a hardware device, possibly by a device node path; hardware is the \
                         operator's to hand out (allow it explicitly)";
const NETWORK: &str = "an option of network protocols, which jobs cannot reach (every input and \
                       output gets `-protocol_whitelist file`); refused so that a command cannot \
                       look like it does more than it does";
const NETWORK_FILE: &str = "a TLS certificate or key path of network protocols, read from any path; \
                            jobs cannot reach the network anyway";
const SCRIPT: &str = "reads a filter graph from a file the policy cannot check; write the graph \
                      inline with `-filter`/`-filter_complex`";
const WHITELIST: &str = "the sandbox sets the whitelists itself (`-protocol_whitelist file`, \
                         `-format_whitelist` of the allowed input formats)";
const NESTED: &str = "options of the muxer that writes the segments; each key is checked like a \
                      command-line option, and file-valued ones are refused";

/// ffmpeg's own options (all of `Command::known_option_names()`) and the AVOptions that need a
/// rule. Options not listed are allowed.
pub(super) const OPTIONS: &[(&str, OptionTreatment, &str)] = &[
    // -- Help and information: OPT_EXIT options.
    ("?", Forbidden, NOT_A_JOB),
    ("-help", Forbidden, NOT_A_JOB),
    ("L", Forbidden, NOT_A_JOB),
    ("h", Forbidden, NOT_A_JOB),
    ("help", Forbidden, NOT_A_JOB),
    ("version", Forbidden, NOT_A_JOB),
    ("buildconf", Forbidden, NOT_A_JOB),
    ("formats", Forbidden, NOT_A_JOB),
    ("muxers", Forbidden, NOT_A_JOB),
    ("demuxers", Forbidden, NOT_A_JOB),
    ("devices", Forbidden, NOT_A_JOB),
    ("codecs", Forbidden, NOT_A_JOB),
    ("decoders", Forbidden, NOT_A_JOB),
    ("encoders", Forbidden, NOT_A_JOB),
    ("bsfs", Forbidden, NOT_A_JOB),
    ("protocols", Forbidden, NOT_A_JOB),
    ("filters", Forbidden, NOT_A_JOB),
    ("pix_fmts", Forbidden, NOT_A_JOB),
    ("layouts", Forbidden, NOT_A_JOB),
    ("sample_fmts", Forbidden, NOT_A_JOB),
    ("dispositions", Forbidden, NOT_A_JOB),
    ("colors", Forbidden, NOT_A_JOB),
    ("hwaccels", Forbidden, NOT_A_JOB),
    ("sources", Forbidden, "lists the sources of a capture device (opening it) and exits: not a job"),
    ("sinks", Forbidden, "lists the sinks of an output device (opening it) and exits: not a job"),
    // -- ffmpeg's own options that read or write files.
    ("report", Forbidden, "writes a log file `ffmpeg-YYYYMMDD-HHMMSS.log` into the working directory"),
    ("vstats", Forbidden, "writes `vstats_HHMMSS.log` into the working directory"),
    ("vstats_file", Forbidden, "writes video encoding statistics to any path"),
    ("vstats_version", Forbidden, "only shapes the output of `-vstats`/`-vstats_file`, which are refused"),
    ("sdp_file", Forbidden, "writes an SDP description to any path (and serves RTP outputs, which are refused)"),
    (
        "progress",
        Forbidden,
        "the job runner owns `-progress pipe:1`; another `-progress` would write to any path or URL",
    ),
    ("filter_script", Forbidden, SCRIPT),
    ("stats_enc_pre", Forbidden, "ffmpeg 6.1 and later: writes encoder statistics to any path"),
    ("stats_enc_post", Forbidden, "ffmpeg 6.1 and later: writes encoder statistics to any path"),
    ("stats_mux_pre", Forbidden, "ffmpeg 6.1 and later: writes muxer statistics to any path"),
    ("print_graphs_file", Forbidden, "ffmpeg 7.1 and later: writes the filter graphs to any path"),
    ("filter_complex_script", Forbidden, SCRIPT),
    (
        "dump_attachment",
        Forbidden,
        "writes attachments to a path, or (empty value) to the file name stored in the input, \
         which whoever made the file chose",
    ),
    ("fpre", Forbidden, "reads codec options from a preset file, which the policy cannot check"),
    (
        "pre",
        PresetName,
        "names a preset installed with ffmpeg (`<codec>-<name>.avpreset` in ffmpeg's data \
         directories); a name with `/` or `..` is refused",
    ),
    (
        "vpre",
        PresetName,
        "names a preset installed with ffmpeg (`<codec>-<name>.ffpreset` in ffmpeg's data \
         directories); a name with `/` or `..` is refused",
    ),
    (
        "apre",
        PresetName,
        "names a preset installed with ffmpeg (`<codec>-<name>.ffpreset` in ffmpeg's data \
         directories); a name with `/` or `..` is refused",
    ),
    (
        "spre",
        PresetName,
        "names a preset installed with ffmpeg (`<codec>-<name>.ffpreset` in ffmpeg's data \
         directories); a name with `/` or `..` is refused",
    ),
    ("init_hw_device", Forbidden, HW_DEVICE),
    ("filter_hw_device", Forbidden, HW_DEVICE),
    ("vaapi_device", Forbidden, HW_DEVICE),
    ("qsv_device", Forbidden, HW_DEVICE),
    ("hwaccel_device", Forbidden, HW_DEVICE),
    ("attach", File(data(Read, Exact)), "reads the file into an attachment stream of the output"),
    (
        "passlogfile",
        File(data(ReadWrite, Prefix)),
        "two-pass statistics: pass 1 writes and pass 2 reads `PREFIX-N.log` (libx264 also \
         `PREFIX-N.log.mbtree`)",
    ),
    ("f", Format, "the demuxer (input) or muxer (output), checked against the format rules"),
    ("vf", FilterGraph, "a filter graph, checked against the filter rules"),
    ("af", FilterGraph, "a filter graph, checked against the filter rules"),
    ("filter", FilterGraph, "a filter graph, checked against the filter rules"),
    ("filter_complex", FilterGraph, "a filter graph, checked against the filter rules"),
    ("lavfi", FilterGraph, "a filter graph, checked against the filter rules"),
    // -- ffmpeg's own options without a rule of their own.
    ("ab", Allowed, ""),
    ("abort_on", Allowed, ""),
    ("absf", Allowed, ""),
    ("ac", Allowed, ""),
    ("accurate_seek", Allowed, ""),
    ("acodec", Allowed, ""),
    ("adrift_threshold", Allowed, ""),
    ("aframes", Allowed, ""),
    ("an", Allowed, ""),
    ("apad", Allowed, ""),
    ("aq", Allowed, ""),
    ("ar", Allowed, ""),
    ("aspect", Allowed, ""),
    ("async", Allowed, ""),
    ("atag", Allowed, ""),
    ("auto_conversion_filters", Allowed, ""),
    ("autorotate", Allowed, ""),
    ("autoscale", Allowed, ""),
    ("b", Allowed, ""),
    ("benchmark", Allowed, ""),
    ("benchmark_all", Allowed, ""),
    ("bitexact", Allowed, ""),
    ("bits_per_raw_sample", Allowed, ""),
    ("bsf", Allowed, ""),
    ("c", Allowed, ""),
    ("canvas_size", Allowed, ""),
    ("ch_layout", Allowed, ""),
    ("channel_layout", Allowed, ""),
    ("chroma_intra_matrix", Allowed, ""),
    ("codec", Allowed, ""),
    ("copy_unknown", Allowed, ""),
    ("copyinkf", Allowed, ""),
    ("copypriorss", Allowed, ""),
    ("copytb", Allowed, ""),
    ("copyts", Allowed, ""),
    ("cpucount", Allowed, ""),
    ("cpuflags", Allowed, ""),
    ("dcodec", Allowed, ""),
    ("debug_ts", Allowed, ""),
    ("dframes", Allowed, ""),
    ("discard", Allowed, ""),
    ("disposition", Allowed, ""),
    ("dn", Allowed, ""),
    ("dts_delta_threshold", Allowed, ""),
    ("dts_error_threshold", Allowed, ""),
    ("dump", Allowed, ""),
    ("enc_time_base", Allowed, ""),
    ("filter_complex_threads", Allowed, ""),
    ("filter_threads", Allowed, ""),
    ("find_stream_info", Allowed, ""),
    ("fix_sub_duration", Allowed, ""),
    ("force_fps", Allowed, ""),
    ("force_key_frames", Allowed, ""),
    ("fps_mode", Allowed, ""),
    ("fpsmax", Allowed, ""),
    ("frame_drop_threshold", Allowed, ""),
    ("frames", Allowed, ""),
    ("fs", Allowed, ""),
    ("guess_layout_max", Allowed, ""),
    ("hex", Allowed, ""),
    ("hide_banner", Allowed, ""),
    ("hwaccel", Allowed, ""),
    ("hwaccel_output_format", Allowed, ""),
    ("ignore_unknown", Allowed, ""),
    ("inter_matrix", Allowed, ""),
    ("intra_matrix", Allowed, ""),
    ("isync", Allowed, ""),
    ("itsoffset", Allowed, ""),
    ("itsscale", Allowed, ""),
    ("loglevel", LogLevel, LOG_LEVEL),
    ("map", Allowed, ""),
    ("map_channel", Allowed, ""),
    ("map_chapters", Allowed, ""),
    ("map_metadata", Allowed, ""),
    ("max_alloc", Allowed, ""),
    ("max_error_rate", Allowed, ""),
    ("max_muxing_queue_size", Allowed, ""),
    ("metadata", Allowed, ""),
    ("muxdelay", Allowed, ""),
    ("muxing_queue_data_threshold", Allowed, ""),
    ("muxpreload", Allowed, ""),
    ("n", Allowed, ""),
    ("pass", Allowed, ""),
    ("pix_fmt", Allowed, ""),
    ("profile", Allowed, ""),
    ("program", Allowed, ""),
    ("psnr", Allowed, ""),
    ("q", Allowed, ""),
    ("qphist", Allowed, ""),
    ("qscale", Allowed, ""),
    ("r", Allowed, ""),
    ("rc_override", Allowed, ""),
    ("re", Allowed, ""),
    ("readrate", Allowed, ""),
    ("recast_media", Allowed, ""),
    ("reinit_filter", Allowed, ""),
    ("s", Allowed, ""),
    ("sample_fmt", Allowed, ""),
    ("scodec", Allowed, ""),
    ("seek_timestamp", Allowed, ""),
    ("shortest", Allowed, ""),
    ("sn", Allowed, ""),
    ("ss", Allowed, ""),
    ("sseof", Allowed, ""),
    ("stag", Allowed, ""),
    ("start_at_zero", Allowed, ""),
    ("stats", Allowed, ""),
    ("stats_period", Allowed, ""),
    ("stdin", Allowed, ""),
    ("stream_loop", Allowed, ""),
    ("streamid", Allowed, ""),
    ("t", Allowed, ""),
    ("tag", Allowed, ""),
    ("target", Allowed, ""),
    ("thread_queue_size", Allowed, ""),
    ("time_base", Allowed, ""),
    ("timecode", Allowed, ""),
    ("timelimit", Allowed, ""),
    ("timestamp", Allowed, ""),
    ("to", Allowed, ""),
    ("top", Allowed, ""),
    ("v", LogLevel, LOG_LEVEL),
    ("vbsf", Allowed, ""),
    ("vcodec", Allowed, ""),
    ("vframes", Allowed, ""),
    ("vn", Allowed, ""),
    ("vol", Allowed, ""),
    ("vsync", Allowed, ""),
    ("vtag", Allowed, ""),
    ("xerror", Allowed, ""),
    ("y", Allowed, ""),
    // -- AVOptions: whitelists and what widens them.
    ("protocol_whitelist", Forbidden, WHITELIST),
    ("protocol_blacklist", Forbidden, WHITELIST),
    ("format_whitelist", Forbidden, WHITELIST),
    (
        "safe",
        OnlyValues(&["1", "true", "yes", "y", "on", "enable", "enabled"]),
        "concat demuxer: `-safe 0` lets a concat list name absolute paths, `..` and URLs; only \
         safe mode (the default) is allowed",
    ),
    ("allowed_extensions", Forbidden, "hls/dash demuxers: widens which files a playlist may name"),
    ("allowed_segment_extensions", Forbidden, "hls demuxer: widens which files a playlist may name"),
    ("seg_format_options", Forbidden, "hls demuxer: options for the segment demuxer, past the policy"),
    ("enable_drefs", Forbidden, "mov demuxer: follows the file's external data references, absolute paths included"),
    ("use_absolute_path", Forbidden, "mov demuxer: lets external data references use absolute paths"),
    (
        "pattern_type",
        OnlyValues(&["sequence", "none", "glob"]),
        "image2 demuxer: `glob_sequence` (5.1's default for `%*`) expands through symlinks the \
         sandbox never saw; `glob` is expanded by the service, which checks every match and \
         hands ffmpeg a numbered sequence (`*`, `?`, `[...]` in the file name only)",
    ),
    ("graph", FilterGraph, "lavfi input: a filter graph that replaces the input URL, checked like it"),
    (
        "graph_file",
        Forbidden,
        "lavfi input: reads the graph from a file the policy cannot check; put the graph in the \
         input URL",
    ),
    ("sub_name", File(data(Read, Exact)), "vobsub demuxer: the `.sub` file that goes with the `.idx` input"),
    ("ifo_palette", File(data(Read, Exact)), "dvdsub decoder: reads the palette from an `.IFO` file"),
    ("assetmaps", Forbidden, "imf demuxer (refused): paths of ASSETMAP files"),
    ("listen", Forbidden, "makes a network protocol wait for incoming connections"),
    ("headers", Forbidden, NETWORK),
    ("cookies", Forbidden, NETWORK),
    ("http_proxy", Forbidden, NETWORK),
    ("user_agent", Forbidden, NETWORK),
    ("user-agent", Forbidden, NETWORK),
    ("referer", Forbidden, NETWORK),
    ("method", Forbidden, NETWORK),
    ("multiple_requests", Forbidden, NETWORK),
    ("auth_type", Forbidden, NETWORK),
    ("http_opts", Forbidden, NETWORK),
    ("http_user_agent", Forbidden, NETWORK),
    ("localaddr", Forbidden, NETWORK),
    ("localport", Forbidden, NETWORK),
    ("rtsp_transport", Forbidden, NETWORK),
    ("ca_file", Forbidden, NETWORK_FILE),
    ("cert_file", Forbidden, NETWORK_FILE),
    ("key_file", Forbidden, NETWORK_FILE),
    // -- Muxer options that name files.
    (
        "hls_segment_filename",
        File(data(Write, Pattern)),
        "hls muxer: where segments are written (`%d`, `%v`, strftime patterns)",
    ),
    ("hls_subtitle_path", File(data(Write, Exact)), "hls muxer: the subtitle playlist"),
    (
        "strftime_mkdir",
        OnlyValues(STRFTIME_MKDIR_OFF),
        "hls muxer: with it the muxer writes each segment's whole path into the playlist, which \
         here is the server's absolute path (in the data directory or a job's staging area); put \
         the date in the segment's file name instead (`-strftime 1 -hls_segment_filename \
         live/s-%Y%m%d-%s.ts`)",
    ),
    (
        "master_pl_name",
        File(beside_output(Write, Exact)),
        "hls muxer: the master playlist, relative to the playlist's directory",
    ),
    (
        "hls_fmp4_init_filename",
        File(beside_output(Write, Exact)),
        "hls muxer: the fMP4 init segment, relative to the playlist's directory",
    ),
    (
        "hls_key_info_file",
        Forbidden,
        "hls muxer: reads a key file from any path named inside it; use `-hls_enc 1` (key \
         written beside the playlist) or `-hls_enc_key`",
    ),
    ("hls_segment_options", NestedOptions, NESTED),
    ("hls_ts_options", NestedOptions, NESTED),
    ("hls_vtt_options", NestedOptions, NESTED),
    (
        "var_stream_map",
        StreamMap,
        "hls muxer: `name:` values replace `%v` in file names, so they may only hold letters, \
         digits, `_` and `-`",
    ),
    ("segment_list", File(data(Write, Exact)), "segment muxer: the segment list"),
    ("segment_header_filename", File(data(Write, Exact)), "segment muxer: a file holding the header"),
    ("segment_format", Format, "segment muxer: the muxer of the segments, checked against the format rules"),
    ("segment_format_options", NestedOptions, NESTED),
    (
        "init_seg_name",
        File(beside_output(Write, Pattern)),
        "dash muxer: init segments, relative to the manifest's directory (`$RepresentationID$` \
         templates)",
    ),
    (
        "media_seg_name",
        File(beside_output(Write, Pattern)),
        "dash muxer: media segments, relative to the manifest's directory (`$Number$` templates)",
    ),
    (
        "single_file_name",
        File(beside_output(Write, Pattern)),
        "dash muxer: the single segment file, relative to the manifest's directory",
    ),
    (
        "hls_master_name",
        File(beside_output(Write, Exact)),
        "dash muxer: the HLS master playlist, relative to the manifest's directory",
    ),
    ("format_options", NestedOptions, NESTED),
    ("header", File(data(Write, Exact)), "webm_chunk muxer: the header file"),
    ("fifo_format", Forbidden, "fifo muxer (refused): the wrapped muxer"),
    ("format_opts", Forbidden, "fifo muxer (refused): options of the wrapped muxer, past the policy"),
    ("fifo_options", Forbidden, "tee muxer (refused): options of its fifo"),
    ("protocol_opts", Forbidden, "image2 muxer: options of the protocols it opens, past the policy"),
    // -- Encoder options.
    (
        "x264-params",
        OptionTreatment::EncoderParams(&X264_PARAMS),
        "libx264 settings; `stats` (default `x264_2pass.log` with `pass`), `cqmfile`, `cqm` \
         (unless `flat`/`jvt`) and `dump-yuv` are resolved in the data directory like \
         `-passlogfile`; the other keys that name files and path-like values are refused",
    ),
    (
        "x264opts",
        OptionTreatment::EncoderParams(&X264OPTS),
        "libx264 settings, split at every `:`; file keys as for `-x264-params`",
    ),
    (
        "x265-params",
        OptionTreatment::EncoderParams(&X265_PARAMS),
        "libx265 settings; `stats` (default `x265_2pass.log` with `pass`), `csv`, \
         `analysis-save`, `analysis-load`, `analysis-reuse-file` (default `x265_analysis.dat` \
         with `multi-pass-opt-analysis`/`-distortion`), `lambda-file`, `dhdr10-info`, \
         `nalu-file` and `scaling-list` (unless `off`/`default`) are resolved in the data \
         directory like `-passlogfile`; the other keys that name files and path-like values \
         are refused",
    ),
    (
        "aom-params",
        OptionTreatment::EncoderParams(&AOM_PARAMS),
        "libaom settings; keys that name files (`film-grain-table`, ...) and path-like values \
         are refused",
    ),
    (
        "svtav1-params",
        OptionTreatment::EncoderParams(&SVTAV1_PARAMS),
        "SVT-AV1 settings; keys that name files and path-like values are refused",
    ),
    ("rav1e-params", OptionTreatment::EncoderParams(&RAV1E_PARAMS), "rav1e settings; path-like values are refused"),
    ("omx_libname", Forbidden, "OpenMAX encoders: loads a shared library (code) by name or path"),
    ("omx_libprefix", Forbidden, "OpenMAX encoders: where shared libraries (code) are loaded from"),
];

/// x264's two-pass statistics `F` (`x264_param_parse()` sets `psz_stat_in` and
/// `psz_stat_out`): written as `F.temp` and renamed, with the macroblock-tree statistics in
/// `F.mbtree` (`F.mbtree.temp` while written), read by pass 2 (`encoder/ratecontrol.c`).
const X264_STATS: FileUse = data(ReadWrite, Suffixed(&[".temp", ".mbtree", ".mbtree.temp"]));

/// Files x264's library reads or writes by key (`x264_param_parse()` in `common/base.c`;
/// checked with x264 0.164 under ffmpeg 5.1).
const X264_FILES: &[ParamFile] = &[
    ParamFile { key: "stats", file_use: X264_STATS, unless: NotAFile::Never },
    ParamFile { key: "cqmfile", file_use: data(Read, Exact), unless: NotAFile::Never },
    // `cqm=flat`/`jvt` (found with `strstr`) are presets; any other value is a file.
    ParamFile { key: "cqm", file_use: data(Read, Exact), unless: NotAFile::Contains(&["flat", "jvt"]) },
    ParamFile { key: "dump-yuv", file_use: data(Write, Exact), unless: NotAFile::Never },
];

/// x264 keys that name files the sandbox does not resolve.
const X264_REFUSED: &[(&str, &str)] = &[
    ("opencl-clbin", "x264's compiled OpenCL kernel cache: code, read and written"),
    ("qpfile", "an x264 command-line option, not a library setting"),
    ("tcfile-in", "an x264 command-line option, not a library setting"),
    ("tcfile-out", "an x264 command-line option, not a library setting"),
];

/// x264 with `pass` and no `stats` writes and reads `x264_2pass.log` in its working directory
/// (`x264_param_default()`); with ffmpeg's own `-pass`, libx264 names it after `-passlogfile`.
const X264_DEFAULTS: &[ParamDefault] =
    &[ParamDefault { when: &["pass"], key: "stats", name: "x264_2pass.log", unless_pass_option: true }];

const X264_PARAMS: EncoderParams = EncoderParams {
    library: "x264",
    syntax: ParamSyntax::Dictionary,
    spelling: KeySpelling::X264,
    files: X264_FILES,
    refused: X264_REFUSED,
    defaults: X264_DEFAULTS,
};

const X264OPTS: EncoderParams = EncoderParams { syntax: ParamSyntax::ColonList, ..X264_PARAMS };

/// x265's two-pass statistics `F`: written as `F.temp` and renamed, with the CU-tree
/// statistics in `F.cutree` (`F.cutree.temp` while written), read by pass 2
/// (`encoder/ratecontrol.cpp`).
const X265_STATS: FileUse = data(ReadWrite, Suffixed(&[".temp", ".cutree", ".cutree.temp"]));

/// Files x265's library reads or writes by key (`x265_param_parse()` in `common/param.cpp`,
/// `encoder/encoder.cpp`, `encoder/api.cpp`; x265 3.5).
const X265_FILES: &[ParamFile] = &[
    ParamFile { key: "stats", file_use: X265_STATS, unless: NotAFile::Never },
    // `x265_csvlog_open()` appends to an existing file.
    ParamFile { key: "csv", file_use: data(Append, Exact), unless: NotAFile::Never },
    // Written as `F.temp`, then renamed.
    ParamFile { key: "analysis-save", file_use: data(Write, Suffixed(&[".temp"])), unless: NotAFile::Never },
    ParamFile { key: "analysis-load", file_use: data(Read, Exact), unless: NotAFile::Never },
    // Multi-pass analysis: written (`F.temp`, renamed) by a pass that writes statistics, read
    // by the next.
    ParamFile { key: "analysis-reuse-file", file_use: data(ReadWrite, Suffixed(&[".temp"])), unless: NotAFile::Never },
    ParamFile { key: "lambda-file", file_use: data(Read, Exact), unless: NotAFile::Never },
    ParamFile { key: "dhdr10-info", file_use: data(Read, Exact), unless: NotAFile::Never },
    ParamFile { key: "nalu-file", file_use: data(Read, Exact), unless: NotAFile::Never },
    ParamFile { key: "scaling-list", file_use: data(Read, Exact), unless: NotAFile::Equals(&["off", "default"]) },
];

/// x265 keys that name files the sandbox does not resolve: options of x265's command line,
/// which `x265_param_parse()` does not know.
const X265_REFUSED: &[(&str, &str)] = &[
    ("qpfile", "an x265 command-line option, not a library setting"),
    ("zonefile", "an x265 command-line option, not a library setting"),
    ("dolby-vision-rpu", "an x265 command-line option, not a library setting"),
    ("film-grain", "an x265 command-line option, not a library setting"),
    ("abr-ladder", "an x265 command-line option, not a library setting"),
    ("recon", "an x265 command-line option, not a library setting"),
];

/// x265 with `pass` and no `stats` uses `x265_2pass.log` (`s_defaultStatFileName`); with
/// multi-pass analysis and no `analysis-reuse-file`, `x265_analysis.dat`. libx265 ignores
/// ffmpeg's `-pass` (ffmpeg 5.1).
const X265_DEFAULTS: &[ParamDefault] = &[
    ParamDefault { when: &["pass"], key: "stats", name: "x265_2pass.log", unless_pass_option: false },
    ParamDefault {
        when: &["multi-pass-opt-analysis", "multi-pass-opt-distortion"],
        key: "analysis-reuse-file",
        name: "x265_analysis.dat",
        unless_pass_option: false,
    },
];

const X265_PARAMS: EncoderParams = EncoderParams {
    library: "x265",
    syntax: ParamSyntax::Dictionary,
    spelling: KeySpelling::X265,
    files: X265_FILES,
    refused: X265_REFUSED,
    defaults: X265_DEFAULTS,
};

const NOT_RESOLVED: &str = "names a file, which the sandbox does not resolve for this library";

/// Keys of `-aom-params` whose values are file names (libaom's `av1_cx_iface.c` options).
const AOM_PARAMS: EncoderParams = EncoderParams {
    library: "libaom",
    syntax: ParamSyntax::Dictionary,
    spelling: KeySpelling::Loose,
    files: &[],
    refused: &[
        ("film-grain-table", NOT_RESOLVED),
        ("vmaf-model-path", NOT_RESOLVED),
        ("partition-info-path", NOT_RESOLVED),
        ("subgop-config-path", NOT_RESOLVED),
        ("second-pass-log", NOT_RESOLVED),
        ("fpf", NOT_RESOLVED),
    ],
    defaults: &[],
};

/// Keys of `-svtav1-params` whose values are file names (SVT-AV1's `svt_av1_enc_parse_parameter`).
const SVTAV1_PARAMS: EncoderParams = EncoderParams {
    library: "SVT-AV1",
    syntax: ParamSyntax::Dictionary,
    spelling: KeySpelling::Loose,
    files: &[],
    refused: &[
        ("stat-file", NOT_RESOLVED),
        ("input-stat-file", NOT_RESOLVED),
        ("output-stat-file", NOT_RESOLVED),
        ("fgs-table", NOT_RESOLVED),
    ],
    defaults: &[],
};

const RAV1E_PARAMS: EncoderParams = EncoderParams {
    library: "rav1e",
    syntax: ParamSyntax::Dictionary,
    spelling: KeySpelling::Loose,
    files: &[],
    refused: &[],
    defaults: &[],
};

const LOG_LEVEL: &str = "the job log keeps what this level shows (ffmpeg itself runs at `info` or more); \
                         a value ffmpeg refuses (`Invalid loglevel`) is refused at submit";
const CODE: &str = "loads plugin code (a shared library) named in its options";
const SENDCMD: &str = "sends commands that change other filters' options while the job runs, \
                       after the policy checked them (`arnndn`'s `model` is such a runtime \
                       option), and reads them from a file with `filename`";
const ZMQ: &str = "listens on a network socket for commands that change other filters' options \
                   while the job runs";
const DNN: &str = "loads a neural-network model (and labels) from files: a large parser the \
                   policy cannot check";
const OPENCL: &str = "compiles and runs an OpenCL program read from a file";

const fn read(option: &'static str, aliases: &'static [&'static str], position: Option<usize>) -> FilterOptionRule {
    FilterOptionRule { option, aliases, position, check: FilterOptionCheck::File(data(Read, Exact)) }
}

const fn write(
    option: &'static str,
    aliases: &'static [&'static str],
    position: Option<usize>,
    naming: Naming,
) -> FilterOptionRule {
    FilterOptionRule { option, aliases, position, check: FilterOptionCheck::File(data(Write, naming)) }
}

const fn fonts_dir(position: Option<usize>) -> FilterOptionRule {
    FilterOptionRule {
        option: "fontsdir",
        aliases: &[],
        position,
        check: FilterOptionCheck::File(data(ReadDirectory, Exact)),
    }
}

/// The filter rules: name, `None` for a refused filter (else the options the sandbox checks),
/// reason. Filters not listed are allowed.
pub(super) const FILTERS: &[(&str, Option<&[FilterOptionRule]>, &str)] = &[
    ("sendcmd", None, SENDCMD),
    ("asendcmd", None, SENDCMD),
    ("zmq", None, ZMQ),
    ("azmq", None, ZMQ),
    ("ladspa", None, CODE),
    ("lv2", None, CODE),
    ("frei0r", None, CODE),
    ("frei0r_src", None, CODE),
    ("program_opencl", None, OPENCL),
    ("openclsrc", None, OPENCL),
    ("dnn_classify", None, DNN),
    ("dnn_detect", None, DNN),
    ("dnn_processing", None, DNN),
    ("sr", None, DNN),
    ("derain", None, DNN),
    (
        "asr",
        None,
        "pocketsphinx speech recognition: reads model directories and dictionaries from any \
         path and writes a log file (`logfn`)",
    ),
    (
        "ocr",
        None,
        "tesseract OCR: reads language data from a directory (`datapath`); not built into \
         Debian's ffmpeg 5.1, so its options are unverified",
    ),
    (
        "libvmaf",
        None,
        "reads models and writes a log from any path (`model_path`, `log_path`); not built \
         into Debian's ffmpeg 5.1, so its options are unverified",
    ),
    (
        "lensfun",
        None,
        "reads a lens database from a directory (`db_path`); not built into Debian's ffmpeg \
         5.1, so its options are unverified",
    ),
    (
        "movie",
        Some(MOVIE),
        "opens a media file itself: the file is resolved, and the sandbox gives the movie's \
         demuxer the same whitelists as inputs (`format_opts`, so clients cannot set it)",
    ),
    (
        "amovie",
        Some(MOVIE),
        "opens a media file itself: the file is resolved, and the sandbox gives the movie's \
         demuxer the same whitelists as inputs (`format_opts`, so clients cannot set it)",
    ),
    (
        "subtitles",
        Some(&[
            FilterOptionRule {
                option: "filename",
                aliases: &["f"],
                position: Some(0),
                check: FilterOptionCheck::SubtitlesFile,
            },
            fonts_dir(Some(2)),
        ]),
        "opens the subtitle file with a demuxer chosen by its content and without the inputs' \
         whitelists: the file is resolved and opened through `subfile:`, which limits what a \
         planted playlist opens to local files; local files outside the data directory stay \
         reachable that way (see the residual risks)",
    ),
    ("ass", Some(&[read("filename", &["f"], Some(0)), fonts_dir(Some(2))]), "libass reads the ASS/SSA file and fonts"),
    (
        "drawtext",
        Some(&[read("fontfile", &[], Some(0)), read("textfile", &[], Some(2))]),
        "renders the text of `textfile` (any file's content would end up in the video) with \
         the font `fontfile`",
    ),
    ("lut3d", Some(&[read("file", &[], Some(0))]), "reads a 3D LUT file"),
    ("lut1d", Some(&[read("file", &[], Some(0))]), "reads a 1D LUT file"),
    ("cover_rect", Some(&[read("cover", &[], Some(0))]), "reads an image (`image2pipe`, no playlist demuxers)"),
    ("find_rect", Some(&[read("object", &[], Some(0))]), "reads an image (`image2pipe`, no playlist demuxers)"),
    (
        "removelogo",
        Some(&[read("filename", &["f"], Some(0))]),
        "reads a mask image (`image2pipe`, no playlist demuxers)",
    ),
    ("metadata", Some(&[write("file", &[], Some(5), Exact)]), "`mode=print` writes to `file`"),
    ("ametadata", Some(&[write("file", &[], Some(5), Exact)]), "`mode=print` writes to `file`"),
    ("psnr", Some(&[write("stats_file", &["f"], Some(0), Exact)]), "writes per-frame statistics"),
    ("ssim", Some(&[write("stats_file", &["f"], Some(0), Exact)]), "writes per-frame statistics"),
    ("vmafmotion", Some(&[write("stats_file", &[], Some(0), Exact)]), "writes per-frame statistics"),
    ("signature", Some(&[write("filename", &[], Some(2), Pattern)]), "writes signatures (`%d` per input)"),
    ("deshake", Some(&[write("filename", &[], Some(10), Exact)]), "writes a motion search log"),
    (
        "vidstabdetect",
        Some(&[write("result", &[], Some(0), Exact)]),
        "writes the transforms file (default `transforms.trf` in the working directory)",
    ),
    (
        "vidstabtransform",
        Some(&[read("input", &[], Some(0))]),
        "reads the transforms file (default `transforms.trf` in the working directory)",
    ),
    (
        "curves",
        Some(&[read("psfile", &[], Some(6)), write("plot", &[], Some(7), Exact)]),
        "reads a Photoshop curves file, writes a gnuplot script",
    ),
    ("selectivecolor", Some(&[read("psfile", &[], Some(10))]), "reads a Photoshop selective color file"),
    ("firequalizer", Some(&[write("dumpfile", &[], Some(9), Exact)]), "writes a gnuplot dump"),
    ("sofalizer", Some(&[read("sofa", &[], Some(0))]), "reads a SOFA (HRTF) file"),
    ("arnndn", Some(&[read("model", &["m"], Some(0))]), "reads an RNNoise model file"),
    (
        "nnedi",
        Some(&[read("weights", &[], Some(0))]),
        "reads a weights file (default `nnedi3_weights.bin` in the working directory)",
    ),
    (
        "cellauto",
        Some(&[read("filename", &["f"], Some(0))]),
        "renders the content of `filename` as the initial pattern",
    ),
    ("life", Some(&[read("filename", &["f"], Some(0))]), "renders the content of `filename` as the initial grid"),
    (
        "showcqt",
        Some(&[read("fontfile", &[], Some(19)), read("axisfile", &[], Some(22))]),
        "reads a font and an axis image",
    ),
    ("fieldhint", Some(&[read("hint", &[], Some(0))]), "reads a hint file"),
    ("paletteuse", Some(&[write("debug_kdtree", &[], Some(6), Exact)]), "writes a Graphviz file of its k-d tree"),
    ("flite", Some(&[read("textfile", &[], Some(3))]), "speaks the content of `textfile`"),
    (
        "libplacebo",
        Some(&[FilterOptionRule {
            option: "custom_shader_path",
            aliases: &[],
            position: None,
            check: FilterOptionCheck::Forbidden("loads a GPU shader program from a file"),
        }]),
        "`custom_shader_path` loads a GPU shader program from a file",
    ),
    (
        "xfade_opencl",
        Some(&[FilterOptionRule {
            option: "source",
            aliases: &[],
            position: None,
            check: FilterOptionCheck::Forbidden(OPENCL),
        }]),
        "`source` compiles an OpenCL program from a file",
    ),
];

const MOVIE: &[FilterOptionRule] = &[
    read("filename", &[], Some(0)),
    FilterOptionRule {
        option: "format_name",
        aliases: &["f"],
        position: Some(1),
        check: FilterOptionCheck::InputFormat,
    },
    FilterOptionRule {
        option: "format_opts",
        aliases: &[],
        position: Some(8),
        check: FilterOptionCheck::SandboxWhitelists,
    },
];

const PLAYLIST: &str = "reads a playlist that names further files and URLs, which it opens \
                        wherever they are: a playlist inside the data directory naming \
                        `/abs/seg.ts` was read (verified, also when the file is named `x.txt` and \
                        probed, hence the format whitelist)";
const NETWORK_FORMAT: &str = "a network protocol format: jobs cannot reach the network";
const CAPTURE: &str = "a capture device: reads hardware or the screen, not a file";
const PLAYBACK: &str = "an output device: plays to hardware or a window, not a file";

/// Demuxers (input formats) that the default policy refuses, with the comma-separated names
/// `ffmpeg -demuxers` prints.
pub(super) const FORBIDDEN_DEMUXERS: &[(&str, &str)] = &[
    ("hls", PLAYLIST),
    (
        "dash",
        "reads a manifest that names further files and URLs, which it opens: a manifest in the \
         data directory named `mpd.srt` was demuxed and its `BaseURL` requested (verified)",
    ),
    ("imf", "reads composition playlists and asset maps that name further files"),
    ("sdp", "opens the RTP network streams a session description names"),
    ("rtp", NETWORK_FORMAT),
    ("rtsp", NETWORK_FORMAT),
    ("sap", NETWORK_FORMAT),
    ("alsa", CAPTURE),
    ("fbdev", CAPTURE),
    ("iec61883", CAPTURE),
    ("jack", CAPTURE),
    ("kmsgrab", CAPTURE),
    ("libcdio", CAPTURE),
    ("libdc1394", CAPTURE),
    ("openal", CAPTURE),
    ("oss", CAPTURE),
    ("pulse", CAPTURE),
    ("video4linux2,v4l2", CAPTURE),
    ("x11grab", CAPTURE),
    ("avisynth", "runs an AviSynth script (not built into Debian's ffmpeg 5.1)"),
    ("vapoursynth", "runs a VapourSynth (Python) script (not built into Debian's ffmpeg 5.1)"),
];

/// Notes for allowed demuxers that come with conditions.
pub(super) const DEMUXER_NOTES: &[(&str, &str)] = &[
    (
        "concat",
        "safe mode only (`-safe 0` is refused): list entries must be relative, without `..` or \
         protocols (verified); nested files inherit the whitelists; every entry (of nested \
         `ffconcat` lists too) is resolved by the sandbox right before the run",
    ),
    (
        "image2",
        "`-pattern_type glob` expanded and checked by the service (`*`, `?`, `[...]` in the file \
         name only); no `glob_sequence` (`%*` in names)",
    ),
    ("lavfi", "the input URL is a filter graph, checked"),
    ("mov,mp4,m4a,3gp,3g2,mj2", "external data references stay off (`-enable_drefs` is refused)"),
    ("vobsub", "`-sub_name` is resolved like any input"),
];

/// Every other demuxer of ffmpeg 5.1 as Debian 12 builds it (`ffmpeg -demuxers`), allowed.
pub(super) const ALLOWED_DEMUXERS: &[&str] = &[
    "3dostr",
    "4xm",
    "aa",
    "aac",
    "aax",
    "ac3",
    "ace",
    "acm",
    "act",
    "adf",
    "adp",
    "ads",
    "adx",
    "aea",
    "afc",
    "aiff",
    "aix",
    "alaw",
    "alias_pix",
    "alp",
    "amr",
    "amrnb",
    "amrwb",
    "anm",
    "apc",
    "ape",
    "apm",
    "apng",
    "aptx",
    "aptx_hd",
    "aqtitle",
    "argo_asf",
    "argo_brp",
    "argo_cvg",
    "asf",
    "asf_o",
    "ass",
    "ast",
    "au",
    "av1",
    "avi",
    "avr",
    "avs",
    "avs2",
    "avs3",
    "bethsoftvid",
    "bfi",
    "bfstm",
    "bin",
    "bink",
    "binka",
    "bit",
    "bitpacked",
    "bmp_pipe",
    "bmv",
    "boa",
    "brender_pix",
    "brstm",
    "c93",
    "caf",
    "cavsvideo",
    "cdg",
    "cdxl",
    "cine",
    "codec2",
    "codec2raw",
    "concat",
    "cri_pipe",
    "data",
    "daud",
    "dcstr",
    "dds_pipe",
    "derf",
    "dfa",
    "dfpwm",
    "dhav",
    "dirac",
    "dnxhd",
    "dpx_pipe",
    "dsf",
    "dsicin",
    "dss",
    "dts",
    "dtshd",
    "dv",
    "dvbsub",
    "dvbtxt",
    "dxa",
    "ea",
    "ea_cdata",
    "eac3",
    "epaf",
    "exr_pipe",
    "f32be",
    "f32le",
    "f64be",
    "f64le",
    "ffmetadata",
    "film_cpk",
    "filmstrip",
    "fits",
    "flac",
    "flic",
    "flv",
    "frm",
    "fsb",
    "fwse",
    "g722",
    "g723_1",
    "g726",
    "g726le",
    "g729",
    "gdv",
    "gem_pipe",
    "genh",
    "gif",
    "gif_pipe",
    "gsm",
    "gxf",
    "h261",
    "h263",
    "h264",
    "hca",
    "hcom",
    "hevc",
    "hnm",
    "ico",
    "idcin",
    "idf",
    "iff",
    "ifv",
    "ilbc",
    "image2",
    "image2pipe",
    "ingenient",
    "ipmovie",
    "ipu",
    "ircam",
    "iss",
    "iv8",
    "ivf",
    "ivr",
    "j2k_pipe",
    "jacosub",
    "jpeg_pipe",
    "jpegls_pipe",
    "jpegxl_pipe",
    "jv",
    "kux",
    "kvag",
    "lavfi",
    "libgme",
    "libopenmpt",
    "live_flv",
    "lmlm4",
    "loas",
    "lrc",
    "luodat",
    "lvf",
    "lxf",
    "m4v",
    "matroska,webm",
    "mca",
    "mcc",
    "mgsts",
    "microdvd",
    "mjpeg",
    "mjpeg_2000",
    "mlp",
    "mlv",
    "mm",
    "mmf",
    "mods",
    "moflex",
    "mov,mp4,m4a,3gp,3g2,mj2",
    "mp3",
    "mpc",
    "mpc8",
    "mpeg",
    "mpegts",
    "mpegtsraw",
    "mpegvideo",
    "mpjpeg",
    "mpl2",
    "mpsub",
    "msf",
    "msnwctcp",
    "msp",
    "mtaf",
    "mtv",
    "mulaw",
    "musx",
    "mv",
    "mvi",
    "mxf",
    "mxg",
    "nc",
    "nistsphere",
    "nsp",
    "nsv",
    "nut",
    "nuv",
    "obu",
    "ogg",
    "oma",
    "paf",
    "pam_pipe",
    "pbm_pipe",
    "pcx_pipe",
    "pfm_pipe",
    "pgm_pipe",
    "pgmyuv_pipe",
    "pgx_pipe",
    "phm_pipe",
    "photocd_pipe",
    "pictor_pipe",
    "pjs",
    "pmp",
    "png_pipe",
    "pp_bnk",
    "ppm_pipe",
    "psd_pipe",
    "psxstr",
    "pva",
    "pvf",
    "qcp",
    "qdraw_pipe",
    "qoi_pipe",
    "r3d",
    "rawvideo",
    "realtext",
    "redspark",
    "rl2",
    "rm",
    "roq",
    "rpl",
    "rsd",
    "rso",
    "s16be",
    "s16le",
    "s24be",
    "s24le",
    "s32be",
    "s32le",
    "s337m",
    "s8",
    "sami",
    "sbc",
    "sbg",
    "scc",
    "scd",
    "sdr2",
    "sds",
    "sdx",
    "ser",
    "sga",
    "sgi_pipe",
    "shn",
    "siff",
    "simbiosis_imx",
    "sln",
    "smjpeg",
    "smk",
    "smush",
    "sol",
    "sox",
    "spdif",
    "srt",
    "stl",
    "subviewer",
    "subviewer1",
    "sunrast_pipe",
    "sup",
    "svag",
    "svg_pipe",
    "svs",
    "swf",
    "tak",
    "tedcaptions",
    "thp",
    "tiertexseq",
    "tiff_pipe",
    "tmv",
    "truehd",
    "tta",
    "tty",
    "txd",
    "ty",
    "u16be",
    "u16le",
    "u24be",
    "u24le",
    "u32be",
    "u32le",
    "u8",
    "v210",
    "v210x",
    "vag",
    "vbn_pipe",
    "vc1",
    "vc1test",
    "vidc",
    "vividas",
    "vivo",
    "vmd",
    "vobsub",
    "voc",
    "vpk",
    "vplayer",
    "vqf",
    "w64",
    "wav",
    "wc3movie",
    "webm_dash_manifest",
    "webp_pipe",
    "webvtt",
    "wsaud",
    "wsd",
    "wsvqa",
    "wtv",
    "wv",
    "wve",
    "xa",
    "xbin",
    "xbm_pipe",
    "xmv",
    "xpm_pipe",
    "xvag",
    "xwd_pipe",
    "xwma",
    "yop",
    "yuv4mpegpipe",
];

/// Muxers (output formats) that the default policy refuses. Every other muxer is allowed.
pub(super) const FORBIDDEN_MUXERS: &[(&str, &str)] = &[
    (
        "tee",
        "opens each `|`-separated slave URL without the protocol whitelist (a `tcp:` slave \
         still connects: verified)",
    ),
    (
        "fifo",
        "wraps another muxer whose format and options (`-fifo_format`, `-format_opts`) pass \
         the policy by",
    ),
    ("fifo_test", "a test muxer for `fifo`"),
    (
        "smoothstreaming",
        "writes a directory tree under the output's name (`Manifest`, `QualityLevels(...)/\
         Fragments(...)`) with `mkdir()`, which fails on the `file:` URL an output is given \
         here, and those files would not be the job's outputs; use `-f dash` or `-f hls` for \
         adaptive streaming",
    ),
    ("rtp", NETWORK_FORMAT),
    ("rtp_mpegts", NETWORK_FORMAT),
    ("rtsp", NETWORK_FORMAT),
    ("sap", NETWORK_FORMAT),
    ("alsa", PLAYBACK),
    ("caca", PLAYBACK),
    ("fbdev", PLAYBACK),
    ("opengl", PLAYBACK),
    ("oss", PLAYBACK),
    ("pulse", PLAYBACK),
    ("sdl,sdl2", PLAYBACK),
    ("video4linux2,v4l2", PLAYBACK),
    ("xv", PLAYBACK),
];
