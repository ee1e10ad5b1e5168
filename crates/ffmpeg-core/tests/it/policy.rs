//! `ffmpeg_core::policy` through `Sandbox::resolve_command`: a corpus of hostile commands, each
//! refused with an exact rule id at an exact argument; ordinary commands that must pass; real
//! ffmpeg runs of rewritten commands (they work) and of a few hostile ones without the sandbox
//! (the refusal mattered); and the policy tables checked against the installed ffmpeg.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use ffmpeg_core::command::Command;
use ffmpeg_core::policy::{FilterOptionCheck, FilterTreatment, OptionTreatment, Policy, RuleId};
use ffmpeg_core::sandbox::{InputSource, OutputTarget, ResolvedCommand, Sandbox, SandboxError};
use tempfile::TempDir;

/// A data directory beside an `outside/` directory holding the "secrets":
///
/// ```text
/// tmp/outside/secret.txt, secret.vtt, img001.png (after `media()`), seg.ts
/// tmp/data/in.mp4, b.mp4, logo.png, subs.srt, subs.ass, t.txt, list.txt, jobs.db
/// tmp/data/{hls,thumbs,logs,seg,fonts,out,dash}/
/// tmp/data/lnk       -> ../outside
/// tmp/data/to_secret -> ../outside/secret.txt
/// ```
struct Fixture {
    _tmp: TempDir,
    outside: PathBuf,
    data: PathBuf,
    sandbox: Sandbox,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let data = tmp.path().join("data");
    fs::create_dir_all(&outside).unwrap();
    for dir in ["hls", "thumbs", "logs", "seg", "fonts", "out", "dash"] {
        fs::create_dir_all(data.join(dir)).unwrap();
    }
    fs::write(outside.join("secret.txt"), "TOPSECRET\n").unwrap();
    for file in ["in.mp4", "b.mp4", "logo.png", "subs.srt", "subs.ass", "t.txt", "list.txt", "jobs.db"] {
        fs::write(data.join(file), "x").unwrap();
    }
    symlink("../outside", data.join("lnk")).unwrap();
    symlink("../outside/secret.txt", data.join("to_secret")).unwrap();
    let mut sandbox = Sandbox::new(&data).unwrap();
    sandbox.deny("jobs.db");
    Fixture { _tmp: tmp, outside, data, sandbox }
}

/// Resolves `line`; `Err((rule, position, message))` when refused (command-line syntax errors
/// report the rule `command-syntax`).
fn resolve(sandbox: &Sandbox, line: &str) -> Result<ResolvedCommand, (String, usize, String)> {
    let command = Command::parse(line).map_err(|e| {
        let position = e.argument().map_or(0, |(p, _)| p);
        ("command-syntax".to_owned(), position, e.to_string())
    })?;
    sandbox.resolve_command(&command).map_err(|e| {
        let position = e.argument().map_or(0, |(p, _)| p);
        (e.rule().as_str().to_owned(), position, e.to_string())
    })
}

/// Hostile commands: `(command, rule id, 1-based position of the offending argument)`.
const HOSTILE: &[(&str, &str, usize)] = &[
    // -- Paths: absolute, `..`, symlinks, globs, reserved, overwriting inputs.
    ("-i /etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 2),
    ("-i ../outside/secret.txt out.mp4", RuleId::PathEscapes.as_str(), 2),
    ("-i in.mp4 /tmp/x.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 out/../../x.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i to_secret out.mp4", RuleId::PathEscapes.as_str(), 2),
    ("-i lnk/secret.txt out.mp4", RuleId::PathEscapes.as_str(), 2),
    ("-i in.mp4 lnk/new.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i 'lnk%*/img%*.png' out.mp4", RuleId::GlobPattern.as_str(), 2),
    ("-f image2 -i 'img%?.png' out.mp4", RuleId::GlobPattern.as_str(), 4),
    ("-f image2 -i 'l%[n]k/img001.png' out.mp4", RuleId::GlobPattern.as_str(), 4),
    ("-f image2 -pattern_type glob -i '{*,../*}.png' out.mp4", RuleId::GlobPattern.as_str(), 6),
    ("-pattern_type glob_sequence -f image2 -i a.png out.mp4", RuleId::ForbiddenValue.as_str(), 1),
    ("-i in.mp4 jobs.db", RuleId::ReservedPath.as_str(), 3),
    ("-i in.mp4 hls", RuleId::NotAFile.as_str(), 3),
    ("-i in.mp4 -vf subtitles=fonts out.mp4", RuleId::NotAFile.as_str(), 3),
    ("-i in.mp4 -c copy in.mp4", RuleId::OutputOverwritesInput.as_str(), 5),
    ("-i in.mp4 -c copy out/../in.mp4", RuleId::OutputOverwritesInput.as_str(), 5),
    ("-i in.mp4 -attach out.mkv -c copy out.mkv", RuleId::OutputOverwritesInput.as_str(), 7),
    (
        "-i in.mp4 -i b.mp4 -lavfi '[0:v][1:v]psnr=stats_file=b.mp4' -f null -",
        RuleId::OutputOverwritesInput.as_str(),
        5,
    ),
    ("-i in.mp4 -vf metadata=mode=print:file=t.txt -attach t.txt out.mkv", RuleId::OutputOverwritesInput.as_str(), 3),
    // -- Protocols: input and output URLs, option values, filter options.
    ("-i http://169.254.169.254/latest/meta-data out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i 'concat:in.mp4|b.mp4' out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i 'subfile,,start,0,end,0,,:/etc/passwd' out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i file:/etc/passwd out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i pipe:0 out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i 'data:text/plain;base64,aGk=' out.mp4", RuleId::Protocol.as_str(), 2),
    ("-i in.mp4 -f mpegts udp://10.0.0.1:1234", RuleId::Protocol.as_str(), 5),
    ("-i in.mp4 tcp://127.0.0.1:9", RuleId::Protocol.as_str(), 3),
    ("-i in.mp4 -attach http://x/font.ttf out.mkv", RuleId::Protocol.as_str(), 3),
    (r#"-i in.mp4 -vf "subtitles=f='http\://169.254.169.254/x.srt'" out.mp4"#, RuleId::Protocol.as_str(), 3),
    (r"-i in.mp4 -vf 'subtitles=file\\\:/etc/passwd' out.mp4", RuleId::Protocol.as_str(), 3),
    (r#"-f lavfi -i "movie=filename='http\://x/a.mp4'" out.mp4"#, RuleId::Protocol.as_str(), 4),
    ("-i in.mp4 -f hls -hls_segment_filename http://x/seg%d.ts hls/i.m3u8", RuleId::Protocol.as_str(), 5),
    ("-i in.mp4 -f segment -segment_list tcp://1.2.3.4:5 seg/s%d.ts", RuleId::Protocol.as_str(), 5),
    ("-i in.mp4 -passlogfile pipe:1 out.mp4", RuleId::Protocol.as_str(), 3),
    // -- Forbidden options, with and without stream specifiers, in every case.
    ("-report -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -vstats out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-i in.mp4 -vstats_file /tmp/v.log out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-vstats_version 2 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -sdp_file /tmp/x.sdp out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-progress http://x/p -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -filter_script:v /etc/passwd out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-filter_complex_script graph.txt -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-dump_attachment:t:0 /tmp/x.ttf -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-dump_attachment:t '' -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -fpre /etc/passwd out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-protocol_whitelist file,http -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-protocol_blacklist none -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-format_whitelist hls -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-f concat -safe 0 -i list.txt out.mp4", RuleId::ForbiddenValue.as_str(), 3),
    ("-safe false -f concat -i list.txt out.mp4", RuleId::ForbiddenValue.as_str(), 1),
    (
        "-i in.mp4 -f hls -strftime 1 -strftime_mkdir 1 -hls_segment_filename live/%Y%m%d/s-%s.ts live/p.m3u8",
        RuleId::ForbiddenValue.as_str(),
        7,
    ),
    ("-i in.mp4 -strftime_mkdir true -f hls live/p.m3u8", RuleId::ForbiddenValue.as_str(), 3),
    ("-allowed_extensions ALL -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-allowed_segment_extensions ALL -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-listen 1 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -hls_key_info_file key.info -f hls hls/i.m3u8", RuleId::ForbiddenOption.as_str(), 3),
    ("-init_hw_device vaapi=va:/dev/dri/renderD128 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-filter_hw_device va -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-hwaccel vaapi -hwaccel_device /dev/dri/renderD128 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-headers 'X-A: b' -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-cookies a=b -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-http_proxy http://p:3128 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-user_agent x -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-ca_file /etc/ssl/private/k.pem -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 out.mp4 -h", RuleId::ForbiddenOption.as_str(), 4),
    ("-i in.mp4 out.mp4 -version", RuleId::ForbiddenOption.as_str(), 4),
    ("-i in.mp4 -formats x out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-i in.mp4 out.mp4 -sources", RuleId::ForbiddenOption.as_str(), 4),
    ("-enable_drefs 1 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-use_absolute_path 1 -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-f lavfi -graph_file g.txt -i nullsrc out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-i in.mp4 -protocol_opts follow=1 thumbs/t%d.png", RuleId::ForbiddenOption.as_str(), 3),
    ("-i in.mp4 -REPORT 1 out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-PROTOCOL_WHITELIST file,http -i in.mp4 out.mp4", RuleId::ForbiddenOption.as_str(), 1),
    ("-i in.mp4 -Vstats_File /tmp/v out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    ("-i in.mp4 -omx_libname /tmp/evil.so -c:v h264_omx out.mp4", RuleId::ForbiddenOption.as_str(), 3),
    // -- Option values: encoder settings, presets, stream maps, nested muxer options.
    ("-i in.mp4 -c:v libx264 -x264-params stats=/tmp/s.log out.mp4", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params pass=1:stats=../s.log out.mp4", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params keyint=60:no_dump_yuv=1 out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params Stats=s.log out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params opencl_clbin=k.bin out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    (r"-i in.mp4 -c:v libx264 -x264-params 'keyint=1\:stats=s.log' out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params cqm=/etc/matrix out.mp4", RuleId::AbsolutePath.as_str(), 5),
    (r"-i in.mp4 -c:v libx264 -x264opts 'keyint=1\:cqmfile=/etc/passwd' out.mp4", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params stats=lnk/s.log out.mp4", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params csv=/tmp/log.csv out.mp4", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params pass=1:--stats=../s out.mp4", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params zonefile=z.txt out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params scaling-list=/etc/sl out.mp4", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params x265-params=stats:nocsv=1 out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libx264 -x264-params novalue out.mp4", RuleId::InvalidValue.as_str(), 5),
    ("-i in.mp4 -c:v libx265 -x265-params zone-file=../z.txt out.mp4", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -c:v libaom-av1 -aom-params film-grain-table=/etc/passwd out.mkv", RuleId::ForbiddenValue.as_str(), 5),
    ("-i in.mp4 -vpre ../../../../data/evil out.webm", RuleId::ForbiddenValue.as_str(), 3),
    ("-i in.mp4 -f hls -var_stream_map 'v:0,name:../..' hls/%v/i.m3u8", RuleId::ForbiddenValue.as_str(), 5),
    (
        "-i in.mp4 -f segment -segment_format_options hls_segment_filename=/tmp/x%d.ts seg/s%d.ts",
        RuleId::ForbiddenOption.as_str(),
        5,
    ),
    (
        r"-i in.mp4 -f segment -segment_format_options protocol_whitelist=file\,http seg/s%d.ts",
        RuleId::ForbiddenOption.as_str(),
        5,
    ),
    ("-i in.mp4 -f segment -segment_format tee seg/s%d.ts", RuleId::ForbiddenFormat.as_str(), 5),
    (
        "-i in.mp4 -f hls -hls_segment_options movflags=+faststart:method=PUT hls/i.m3u8",
        RuleId::ForbiddenOption.as_str(),
        5,
    ),
    ("-i in.mp4 -f dash -format_options protocol_opts=a=b dash/a.mpd", RuleId::ForbiddenOption.as_str(), 5),
    ("-i in.mp4 -f segment -segment_format_options nokey seg/s%d.ts", RuleId::ForbiddenValue.as_str(), 5),
    // -- Muxer file options.
    ("-i in.mp4 -f hls -master_pl_name ../../m.m3u8 hls/i.m3u8", RuleId::ParentDirectory.as_str(), 5),
    ("-i in.mp4 -f hls -hls_fmp4_init_filename /tmp/init.mp4 hls/i.m3u8", RuleId::AbsolutePath.as_str(), 5),
    (
        "-i in.mp4 -f dash -init_seg_name '../../x-$RepresentationID$.m4s' dash/a.mpd",
        RuleId::ParentDirectory.as_str(),
        5,
    ),
    ("-i in.mp4 -f dash -media_seg_name 'lnk/x-$Number$.m4s' a.mpd", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -f hls -hls_segment_filename ../seg%d.ts hls/i.m3u8", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -f hls -hls_subtitle_path /tmp/s.m3u8 hls/i.m3u8", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -f segment -segment_list /tmp/list.m3u8 seg/s%d.ts", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -f segment -segment_header_filename ../h.ts seg/s%d.ts", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -f webm_chunk -header /tmp/h.webm seg/c%d.chk", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -passlogfile /tmp/x out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -attach /etc/passwd out.mkv", RuleId::AbsolutePath.as_str(), 3),
    ("-sub_name /tmp/x.sub -i in.mp4 out.mkv", RuleId::AbsolutePath.as_str(), 1),
    ("-ifo_palette ../x.IFO -i in.mp4 out.mkv", RuleId::PathEscapes.as_str(), 1),
    // -- Forbidden formats (input and output), in any case.
    ("-f hls -i in.m3u8 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f HLS -i in.mp4 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f applehttp -i in.mp4 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f dash -i a.mpd out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    // Tester I6: a playlist or manifest named as such, without `-f`, is refused at submit too.
    ("-i in.m3u8 -c copy out.mp4", RuleId::ForbiddenFormat.as_str(), 2),
    ("-i live/INDEX.M3U8 -c copy out.mp4", RuleId::ForbiddenFormat.as_str(), 2),
    ("-i in.mp4 -i list.m3u out.mp4", RuleId::ForbiddenFormat.as_str(), 4),
    ("-i dash/a.mpd -c copy out.mp4", RuleId::ForbiddenFormat.as_str(), 2),
    ("-f imf -i cpl.xml out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f sdp -i a.sdp out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f rtsp -i x out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f v4l2 -i x out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f video4linux2 -i x out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f x11grab -i :0.0 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f alsa -i default out.wav", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f pulse -i default out.wav", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f fbdev -i fb0 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f kmsgrab -i - out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-f nosuchformat -i in.mp4 out.mp4", RuleId::ForbiddenFormat.as_str(), 1),
    ("-i in.mp4 -f rtp out.sdp", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f tee 'a.mp4|b.mp4'", RuleId::ForbiddenFormat.as_str(), 3),
    // Tester H2: mkdir() on its output URL, files nobody tracks.
    ("-i in.mp4 -f smoothstreaming out/ss", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f Tee a.mp4", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f fifo -fifo_format mp4 out.mp4", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f alsa default", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f sdl2 window", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f v4l2 video0", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -f sap out.sdp", RuleId::ForbiddenFormat.as_str(), 3),
    // -- Forbidden filters (and forbidden filter options), in every graph option.
    (
        "-i in.mp4 -vf \"sendcmd=c='0 drawtext reinit textfile=/etc/passwd',drawtext=text=x\" out.mp4",
        RuleId::ForbiddenFilter.as_str(),
        3,
    ),
    ("-i in.mp4 -af asendcmd=f=cmds.txt out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -vf zmq out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -vf ZMQ out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    (r"-i in.mp4 -af 'azmq=b=tcp\\\://0.0.0.0\\\:5555' out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -af ladspa=f=/tmp/evil.so:p=x out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -af lv2=plugin=urn out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -vf frei0r=/tmp/evil.so out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-f lavfi -i frei0r_src=size=64x64:filter_name=/tmp/evil.so out.mp4", RuleId::ForbiddenFilter.as_str(), 4),
    ("-i in.mp4 -vf dnn_processing=dnn_backend=native:model=m.model out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -vf sr=model=x.pb out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -vf program_opencl=source=k.cl out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-f lavfi -i openclsrc=source=k.cl out.mp4", RuleId::ForbiddenFilter.as_str(), 4),
    ("-i in.mp4 -af asr=hmm=/x out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -filter_complex '[0:v]split[a][b];[b]zmq[c]' -map '[a]' out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    (
        r"-i in.mp4 -lavfi 'movie=b.mp4:format_opts=protocol_whitelist=file\\\,http[m];[0:v][m]overlay' out.mp4",
        RuleId::ForbiddenFilter.as_str(),
        3,
    ),
    ("-i in.mp4 -vf 'movie=b.mp4:f=hls[m];[in][m]overlay' out.mp4", RuleId::ForbiddenFormat.as_str(), 3),
    ("-i in.mp4 -vf libplacebo=custom_shader_path=/tmp/s.hook out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    ("-i in.mp4 -filter:v:0 ocr out.mp4", RuleId::ForbiddenFilter.as_str(), 3),
    // -- Filter file options leaving the data directory, with quoting tricks.
    ("-i in.mp4 -vf subtitles=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf \"subtitles='../../etc/passwd'\" out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf subtitles=f=../outside/secret.txt out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf \"subtitles=filename='/etc/passwd'\" out.mp4", RuleId::AbsolutePath.as_str(), 3),
    (r"-i in.mp4 -vf 'subtitles=\/etc\/passwd' out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf 'subtitles= /etc/passwd' out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf '[in]subtitles=f=/etc/passwd[out]' out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf 'null,subtitles@x=/etc/passwd' out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf subtitles=subs.srt:f=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf subtitles=subs.srt:fontsdir=/usr/share/fonts out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf ass=lnk/secret.txt out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf drawtext=textfile=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf drawtext=textfile=to_secret out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf drawtext=/usr/share/fonts/x.ttf:hi out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf drawtext=::/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf lut3d=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf lut1d=../x.cube out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf cover_rect=/etc/x.png out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf find_rect=object=../x.pgm out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -vf removelogo=f=/tmp/m.png out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf metadata=mode=print:file=/tmp/m.txt out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf metadata=print:k:v:equal:1:/tmp/m.txt out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -i b.mp4 -lavfi '[0:v][1:v]psnr=stats_file=/tmp/p.log' -f null -", RuleId::AbsolutePath.as_str(), 5),
    ("-i in.mp4 -i b.mp4 -lavfi '[0:v][1:v]ssim=f=../s.log' -f null -", RuleId::PathEscapes.as_str(), 5),
    ("-i in.mp4 -vf vidstabdetect=result=/tmp/t.trf -f null -", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf curves=psfile=/etc/x.acv out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf curves=plot=lnk/p.plt out.mp4", RuleId::PathEscapes.as_str(), 3),
    ("-i in.mp4 -af firequalizer=dumpfile=/tmp/d out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -af sofalizer=sofa=/usr/share/x.sofa out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -af arnndn=m=/etc/x.rnnn out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf signature=filename=/tmp/s%d.bin out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf showcqt=axisfile=/etc/x.png out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf nnedi=weights=/x.bin out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-i in.mp4 -vf deshake=filename=/tmp/d.log out.mp4", RuleId::AbsolutePath.as_str(), 3),
    ("-f lavfi -i cellauto=f=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 4),
    ("-f lavfi -i life=f=../outside/secret.txt out.mp4", RuleId::PathEscapes.as_str(), 4),
    ("-f lavfi -i flite=textfile=/etc/passwd out.wav", RuleId::AbsolutePath.as_str(), 4),
    ("-f lavfi -i movie=/etc/passwd out.mp4", RuleId::AbsolutePath.as_str(), 4),
    ("-f lavfi -i amovie=../outside/a.wav out.wav", RuleId::PathEscapes.as_str(), 4),
    ("-f lavfi -graph movie=/etc/passwd -i nullsrc out.mp4", RuleId::AbsolutePath.as_str(), 3),
    // -- Filter graphs that do not parse.
    ("-i in.mp4 -vf 'scale=1:2[' out.mp4", RuleId::FiltergraphSyntax.as_str(), 3),
    ("-i in.mp4 -vf drawtext=text=x:/etc/hostname out.mp4", RuleId::FiltergraphSyntax.as_str(), 3),
    ("-f lavfi -i \"testsrc,'\" out.mp4", RuleId::FiltergraphSyntax.as_str(), 4),
    // -- `-/option` (ffmpeg 6's "value from a file"): not even an option name.
    ("-i in.mp4 -/vf graph.txt out.mp4", "command-syntax", 3),
    ("-/filter_complex graph.txt -i in.mp4 out.mp4", "command-syntax", 1),
];

#[test]
fn hostile_commands_are_refused_with_the_right_rule_and_argument() {
    let f = fixture();
    assert!(HOSTILE.len() >= 80, "{} hostile commands", HOSTILE.len());
    let mut failures = Vec::new();
    for &(line, rule, position) in HOSTILE {
        match resolve(&f.sandbox, line) {
            Ok(resolved) => failures.push(format!("{line}\n  accepted: {:?}", resolved.to_ffmpeg_args())),
            Err((got_rule, got_position, message)) => {
                if got_rule != rule || got_position != position {
                    failures.push(format!(
                        "{line}\n  expected {rule} at {position}, got {got_rule} at \
                         {got_position}: {message}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let categories: BTreeSet<&str> = HOSTILE.iter().map(|(_, rule, _)| *rule).collect();
    assert_eq!(categories.len(), 15, "{categories:?}");
}

/// The messages read well: the argument, where in it, and why.
#[test]
fn refusal_messages() {
    let f = fixture();
    let message = |line: &str| match resolve(&f.sandbox, line) {
        Ok(_) => panic!("accepted: {line}"),
        Err((_, _, message)) => message,
    };
    assert_eq!(
        message("-y -i in.mp4 -vf subtitles=/etc/passwd out.mp4"),
        "argument 4 `-vf subtitles=/etc/passwd`: filter `subtitles` option `filename`: \
         absolute paths are not allowed"
    );
    assert_eq!(
        message("-i in.mp4 -dump_attachment:t:0 x.ttf out.mp4"),
        "argument 3 `-dump_attachment:t:0 x.ttf`: option `-dump_attachment:t:0` is not \
         allowed: writes attachments to a path, or (empty value) to the file name stored in \
         the input, which whoever made the file chose"
    );
    assert_eq!(
        message("-f concat -safe 0 -i list.txt out.mp4"),
        "argument 3 `-safe 0`: option `-safe`: the value `0` is not allowed (only `1`, `true`, \
         `yes`, `y`, `on`, `enable`, `enabled`); concat demuxer: `-safe 0` lets a concat list \
         name absolute paths, `..` and URLs; only safe mode (the default) is allowed"
    );
    assert_eq!(
        message("-i in.mp4 -af ladspa=f=/tmp/evil.so out.mp4"),
        "argument 3 `-af ladspa=f=/tmp/evil.so`: filter `ladspa` is not allowed: loads plugin \
         code (a shared library) named in its options"
    );
    assert_eq!(
        message("-f hls -i x.m3u8 out.mp4"),
        "argument 1 `-f hls`: input format `hls` is not allowed: reads a playlist that names \
         further files and URLs, which it opens wherever they are: a playlist inside the data \
         directory naming `/abs/seg.ts` was read (verified, also when the file is named `x.txt` \
         and probed, hence the format whitelist)"
    );
    assert_eq!(
        message("-i hls/index.m3u8 -c copy out.mp4"),
        "argument 2 `hls/index.m3u8`: the name says an HLS playlist, which ffmpeg reads with the \
         input format `hls`, and `hls` is not allowed: reads a playlist that names further files \
         and URLs, which it opens wherever they are: a playlist inside the data directory naming \
         `/abs/seg.ts` was read (verified, also when the file is named `x.txt` and probed, hence \
         the format whitelist) (if the file is not an HLS playlist, name its format with `-f`)"
    );
    assert_eq!(
        message("-i in.mp4 -c copy in.mp4"),
        "argument 5 `in.mp4`: a job's outputs may not overwrite its own inputs (argument 2 \
         `in.mp4`)"
    );
    assert_eq!(
        message("-i 'lnk%*/x.png' out.mp4"),
        "argument 2 `lnk%*/x.png`: `glob_sequence` patterns (`%*`, `%?`, `%[`, `%{`) are not allowed: \
         they expand to names the sandbox never checked; use `-pattern_type glob` with `*`, `?` or `[...]`"
    );
    assert_eq!(
        message("-i in.mp4 -vf 'scale=1:2[' out.mp4"),
        "argument 3 `-vf scale=1:2[`: invalid filter graph: byte 9: link label `[` is not \
         closed with `]`"
    );
    assert_eq!(
        message("-i in.mp4 -f hls -master_pl_name ../m.m3u8 hls/i.m3u8"),
        "argument 5 `-master_pl_name ../m.m3u8`: option `-master_pl_name`: `..` is not allowed \
         here: the value is relative to the output's directory"
    );
}

/// Ordinary real-world commands that must pass unchanged (apart from resolved paths).
const ORDINARY: &[&str] = &[
    "-i in.mp4 -vf scale=1280:-2 -c:v libx264 -crf 23 -preset fast out/scaled.mp4",
    "-i in.mp4 -vf crop=640:360:0:0 out/crop.mp4",
    "-i in.mp4 -i logo.png -filter_complex '[0:v][1:v]overlay=10:10[v]' -map '[v]' -map '0:a?' out/overlay.mp4",
    "-i in.mp4 -c:v libx264 -c:a aac -f hls -hls_time 2 -hls_segment_filename hls/seg_%03d.ts hls/index.m3u8",
    "-i in.mp4 -vf fps=1 thumbs/t%03d.png",
    "-i in.mp4 -vn -c:a libmp3lame out/a.mp3",
    "-i in.mp4 -vf subtitles=subs.srt out/subbed.mp4",
    "-i in.mp4 -vf \"subtitles=subs.srt:force_style='Fontsize=24'\" out/subbed.mp4",
    "-i in.mp4 -vf ass=subs.ass out/ass.mp4",
    "-y -i in.mp4 -c:v libx264 -b:v 1M -pass 1 -passlogfile logs/x -an -f null -",
    "-y -i in.mp4 -c:v libx264 -b:v 1M -pass 2 -passlogfile logs/x out/2pass.mp4",
    "-i in.mp4 -af loudnorm=print_format=json -f null -",
    "-i in.mp4 -af ebur128 -f null -",
    "-f lavfi -i testsrc=duration=2:size=320x240:rate=25 -f lavfi -i sine=duration=2 -shortest out/lavfi.mp4",
    "-i in.mp4 -metadata title=\"x\" -metadata:s:a:0 language=eng -c copy out/meta.mp4",
    "-i in.mp4 -i b.mp4 -map 0:v:0 -map 1:a -c copy out/map.mkv",
    "-ss 5 -t 10 -i in.mp4 -c copy out/cut.mp4",
    "-i in.mp4 -movflags +faststart -c copy out/fast.mp4",
    "-i in.mp4 -c:v libx264 -x264-params keyint=60:min-keyint=60:scenecut=0 out/k.mp4",
    "-i in.mp4 -c:v libx264 -x264opts keyint=60 out/k.mp4",
    "-i in.mp4 -c copy out/copy.mkv",
    "-i in.mp4 -c copy -f segment -segment_time 2 -segment_list seg/list.m3u8 seg/s%03d.ts",
    "-i in.mp4 -c copy -f segment -segment_format mp4 -segment_format_options movflags=+faststart seg/p%d.mp4",
    "-i in.mp4 -vf drawtext=textfile=t.txt:fontsize=20 out/text.mp4",
    "-i in.mp4 -vf \"drawtext=text='%{pts\\:hms}':x=10:y=10\" out/pts.mp4",
    "-f concat -i list.txt -c copy out/joined.mp4",
    "-f concat -safe 1 -i list.txt -c copy out/joined.mp4",
    "-i in.mp4 -i b.mp4 -lavfi '[0:v][1:v]psnr=stats_file=logs/psnr.log' -f null -",
    "-i in.mp4 -vf 'movie=logo.png[wm];[in][wm]overlay=10:10[out]' out/wm.mp4",
    "-f lavfi -i movie=in.mp4 -c:v libx264 out/movie.mp4",
    "-i in.mp4 -f dash -init_seg_name 'init-$RepresentationID$.m4s' -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' dash/a.mpd",
    "-i in.mp4 -f hls -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4 -master_pl_name master.m3u8 hls/v.m3u8",
    "-i in.mp4 -map 0:v -map 0:a -f hls -var_stream_map 'v:0,a:0,name:hd' hls/%v/i.m3u8",
    "-i in.mp4 -attach fonts/f.ttf -metadata:s:t mimetype=application/x-truetype-font -c copy out/att.mkv",
    "-i in.mp4 -c:v libvpx -vpre libvpx-720p out/v.webm",
    "-loglevel error -threads 2 -benchmark -n -i in.mp4 -c copy out/x.mp4",
    "-nostdin -hide_banner -v warning -stats -i in.mp4 -c copy out/x.mp4",
    "-f image2 -framerate 1 -i thumbs/t%03d.png -c:v libx264 out/slideshow.mp4",
    "-f image2 -pattern_type sequence -start_number 1 -i thumbs/t%03d.png out/slideshow.mp4",
    "-hwaccel auto -i in.mp4 -c:v libx264 out/hw.mp4",
    "-i in.mp4 -filter:a volume=0.5 -filter:v:0 hflip out/flip.mp4",
    "-f lavfi -i 'color=c=black:s=320x240:d=1,drawtext=text=hello' out/text.png",
    "-i in.mp4 -vf vidstabdetect=result=logs/t.trf -f null -",
    "-i in.mp4 -vf vidstabtransform=input=logs/t.trf out/stable.mp4",
    "-i in.mp4 -vf lut3d=luts/film.cube out/graded.mp4",
];

#[test]
fn ordinary_commands_pass() {
    let f = fixture();
    let mut failures = Vec::new();
    for line in ORDINARY {
        if let Err((rule, position, message)) = resolve(&f.sandbox, line) {
            failures.push(format!("{line}\n  refused ({rule} at {position}): {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The rewritten arguments, with the data directory as `$DATA` and the format whitelist as
/// `$FORMATS`.
fn rewritten(sandbox: &Sandbox, line: &str) -> String {
    let resolved = match resolve(sandbox, line) {
        Ok(resolved) => resolved,
        Err((_, _, message)) => panic!("{line}: {message}"),
    };
    let root = sandbox.root().display().to_string();
    let formats = sandbox.policy().input_format_whitelist();
    shell_words_join(&resolved.to_ffmpeg_args()).replace(&formats, "$FORMATS").replace(&root, "$DATA")
}

fn shell_words_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:$%=+,".contains(c)) && !a.is_empty() {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn file_options_and_filter_files_are_rewritten() {
    let f = fixture();
    let s = &f.sandbox;
    let pre = "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4";
    assert_eq!(
        rewritten(s, "-i in.mp4 -vf subtitles=subs.srt out/a.mp4"),
        format!(
            r"{pre} -vf 'subtitles='\''subfile,,start,0,end,0,,\:$DATA/subs.srt'\''' -protocol_whitelist file file:$DATA/out/a.mp4"
        )
    );
    assert_eq!(
        rewritten(s, "-i in.mp4 -vf drawtext=textfile=t.txt:text_shaping=1 out/a.mp4"),
        format!("{pre} -vf drawtext=textfile=$DATA/t.txt:text_shaping=1 -protocol_whitelist file file:$DATA/out/a.mp4")
    );
    assert_eq!(
        rewritten(s, "-i in.mp4 -f hls -hls_segment_filename hls/s%d.ts -master_pl_name m.m3u8 hls/i.m3u8"),
        format!(
            "{pre} -f hls -hls_segment_filename $DATA/hls/s%d.ts -master_pl_name m.m3u8 -protocol_whitelist file $DATA/hls/i.m3u8"
        )
    );
    // movie gets the inputs' whitelists through format_opts.
    let movie = rewritten(s, "-f lavfi -i movie=logo.png out/a.png");
    assert_eq!(
        movie,
        "-f lavfi -protocol_whitelist file -format_whitelist $FORMATS -i \
         'movie='\\''$DATA/logo.png:format_opts=protocol_whitelist=file\\:format_whitelist=$FORMATS'\\''' \
         -protocol_whitelist file file:$DATA/out/a.png"
    );
    // An untouched graph is passed as written.
    assert_eq!(
        rewritten(s, "-i in.mp4 -vf 'scale=w=iw/2:h=-2 , fps=1' out/a.mp4"),
        format!("{pre} -vf 'scale=w=iw/2:h=-2 , fps=1' -protocol_whitelist file file:$DATA/out/a.mp4")
    );
}

#[test]
fn inputs_side_files_and_option_files() {
    let f = fixture();
    let line = "-f lavfi -i testsrc=d=1 -i in.mp4 -lavfi '[0:v][1:v]psnr=stats_file=logs/p.log' \
                -f null - -c copy -f hls -hls_segment_filename hls/s%d.ts -master_pl_name m.m3u8 \
                hls/i.m3u8 -c copy -passlogfile logs/x -attach fonts/f.ttf out/a.mkv";
    let resolved = resolve(&f.sandbox, line).unwrap();
    assert!(matches!(&resolved.inputs()[0], InputSource::Lavfi { graph } if graph == "testsrc=d=1"));
    assert_eq!(resolved.inputs()[1].file().map(|p| p.relative()), Some(Path::new("in.mp4")));
    assert_eq!(resolved.outputs()[0], OutputTarget::Null);
    let side = |i: usize| -> Vec<String> {
        resolved.output_side_files(i).iter().map(|p| p.relative().display().to_string()).collect()
    };
    assert!(side(0).is_empty());
    assert_eq!(side(1), ["hls/s%d.ts", "hls/m.m3u8"]);
    assert_eq!(side(2), ["logs/x"]);
    assert!(side(3).is_empty());
    let files: Vec<(String, String, Option<usize>)> = resolved
        .option_files()
        .iter()
        .map(|file| (file.context().to_owned(), file.path().relative().display().to_string(), file.output()))
        .collect();
    assert_eq!(
        files,
        [
            ("filter `psnr` option `stats_file`".to_owned(), "logs/p.log".to_owned(), None),
            ("option `-hls_segment_filename`".to_owned(), "hls/s%d.ts".to_owned(), Some(1)),
            ("option `-master_pl_name`".to_owned(), "hls/m.m3u8".to_owned(), Some(1)),
            ("option `-passlogfile`".to_owned(), "logs/x".to_owned(), Some(2)),
            ("option `-attach`".to_owned(), "fonts/f.ttf".to_owned(), Some(2)),
        ]
    );
}

#[test]
fn operators_adjust_the_policy() {
    let f = fixture();
    let strict = f.sandbox.clone().with_policy(
        Policy::default()
            .forbid_filter("subtitles", "no burn-in here")
            .forbid_option("threads", "one thread per job")
            .forbid_input_format("concat", "no playlists at all")
            .forbid_output_format("gif", "no GIFs"),
    );
    let rule_of = |sandbox: &Sandbox, line: &str| resolve(sandbox, line).err().map(|e| e.0);
    assert_eq!(
        rule_of(&strict, "-i in.mp4 -vf subtitles=subs.srt out.mp4").as_deref(),
        Some(RuleId::ForbiddenFilter.as_str())
    );
    assert_eq!(rule_of(&strict, "-i in.mp4 -threads 4 out.mp4").as_deref(), Some(RuleId::ForbiddenOption.as_str()));
    assert_eq!(rule_of(&strict, "-f concat -i list.txt out.mp4").as_deref(), Some(RuleId::ForbiddenFormat.as_str()));
    assert_eq!(rule_of(&strict, "-i in.mp4 -f gif out.gif").as_deref(), Some(RuleId::ForbiddenFormat.as_str()));
    assert!(!strict.policy().input_format_whitelist().split(',').any(|f| f == "concat"));

    let lax = f.sandbox.clone().with_policy(
        Policy::default()
            .allow_option("hwaccel_device")
            .allow_filter("zmq")
            .allow_input_format("hls")
            .allow_output_format("tee"),
    );
    assert!(resolve(&lax, "-hwaccel_device /dev/dri/renderD128 -i in.mp4 out.mp4").is_ok());
    assert!(resolve(&lax, "-i in.mp4 -vf zmq out.mp4").is_ok());
    assert!(resolve(&lax, "-f hls -i in.m3u8 out.mp4").is_ok());
    assert!(resolve(&lax, "-i in.m3u8 out.mp4").is_ok(), "a playlist's name is refused only while `hls` is");
    assert!(resolve(&f.sandbox, "-f mpegts -i in.m3u8 out.mp4").is_ok(), "`-f` names what the file is");
    assert!(lax.policy().input_format_whitelist().starts_with("3dostr,"));
    assert!(lax.policy().input_format_whitelist().ends_with(",hls"));
    // tee stays refused whatever the policy says: its URL lists further URLs.
    assert_eq!(rule_of(&lax, "-i in.mp4 -f tee 'a.mp4|b.mp4'").as_deref(), Some(RuleId::Protocol.as_str()));
}

#[test]
fn rule_lookups() {
    let p = Policy::default();
    assert_eq!(p.option_rule("/vf").treatment(), &OptionTreatment::Forbidden);
    assert_eq!(p.option_rule("REPORT").name(), "report");
    assert_eq!(p.option_rule("crf").treatment(), &OptionTreatment::Allowed);
    assert_eq!(p.option_rule("crf").name(), "*");
    assert_eq!(p.option_rule("nostdin").name(), "stdin");
    assert!(matches!(p.option_rule("hls_segment_filename").treatment(), OptionTreatment::File(_)));
    assert!(p.filter_rule("Sendcmd").is_forbidden());
    assert_eq!(p.filter_rule("scale").treatment(), &FilterTreatment::Allowed);
    assert!(p.input_format_rule("MP4").is_some_and(|r| r.is_allowed()));
    assert!(p.input_format_rule("webm").is_some_and(|r| r.is_allowed()));
    assert!(p.input_format_rule("v4l2").is_some_and(|r| !r.is_allowed()));
    assert!(p.input_format_rule("nosuch").is_none());
    assert!(p.output_format_rule("mp4").is_none());
    assert!(p.output_format_rule("SDL").is_some_and(|r| !r.is_allowed()));
    let whitelist = p.input_format_whitelist();
    for name in ["mov", "matroska", "mpegts", "lavfi", "concat", "image2", "srt"] {
        assert!(whitelist.split(',').any(|f| f == name), "{name}");
    }
    for name in ["hls", "dash", "sdp", "rtsp", "x11grab", "video4linux2", "imf"] {
        assert!(!whitelist.split(',').any(|f| f == name), "{name}");
    }
}

#[test]
fn sandbox_errors_name_their_rule_and_argument() {
    let e = Sandbox::new("/nonexistent/data/dir").unwrap_err();
    assert_eq!(e.rule(), RuleId::DataDirectory);
    assert_eq!(e.argument(), None);
    let f = fixture();
    let e = f.sandbox.resolve("../x", 4).unwrap_err();
    assert_eq!((e.rule(), e.argument()), (RuleId::PathEscapes, Some((4, "../x"))));
    let e = f.sandbox.resolve("/x", 2).unwrap_err();
    assert!(matches!(e, SandboxError::Absolute { .. }));
}

// ---------------------------------------------------------------------------------------------
// Real ffmpeg.

/// Runs the installed ffmpeg with `args` in `dir`; returns (success, stderr).
fn ffmpeg(dir: &Path, args: &[String]) -> (bool, String) {
    let output = Process::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-y"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg is installed (CI installs it)");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn ffmpeg_str(dir: &Path, args: &[&str]) -> (bool, String) {
    ffmpeg(dir, &args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
}

/// Real media in the fixture: `in.mp4` (2 s, video and audio), `b.mp4`, `logo.png`,
/// `subs.srt`, `t.txt`; outside: `seg.ts` and `img001.png`.
fn media(f: &Fixture) {
    for (args, dir) in [
        (
            vec![
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=2:s=160x120:r=25",
                "-f",
                "lavfi",
                "-i",
                "sine=d=2",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "25",
                "-shortest",
                "in.mp4",
            ],
            &f.data,
        ),
        (vec!["-f", "lavfi", "-i", "testsrc2=d=2:s=160x120:r=25", "-pix_fmt", "yuv420p", "b.mp4"], &f.data),
        (vec!["-f", "lavfi", "-i", "color=red:s=32x32", "-frames:v", "1", "logo.png"], &f.data),
        (vec!["-f", "lavfi", "-i", "testsrc=d=2:s=160x120:r=25", "-pix_fmt", "yuv420p", "seg.ts"], &f.outside),
        (vec!["-f", "lavfi", "-i", "color=blue:s=32x32", "-frames:v", "1", "img001.png"], &f.outside),
    ] {
        let (ok, err) = ffmpeg_str(dir, &args);
        assert!(ok, "{args:?}: {err}");
    }
    fs::write(f.data.join("subs.srt"), "1\n00:00:00,000 --> 00:00:02,000\nHello from the data directory\n").unwrap();
    fs::write(f.data.join("t.txt"), "harmless text\n").unwrap();
}

fn run(f: &Fixture, line: &str) -> (ResolvedCommand, String) {
    let resolved = match resolve(&f.sandbox, line) {
        Ok(resolved) => resolved,
        Err((_, _, message)) => panic!("{line}: {message}"),
    };
    let args = resolved.to_ffmpeg_args();
    let (ok, err) = ffmpeg(&f.data, &args);
    assert!(ok, "{line}\n{args:?}\n{err}");
    (resolved, err)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Ordinary commands, rewritten by the sandbox, run with the real ffmpeg and produce their
/// files inside the data directory.
#[test]
fn rewritten_commands_work_with_ffmpeg() {
    let f = fixture();
    media(&f);

    // Subtitles burn-in (through `subfile:`), drawtext with a text file, a movie overlay.
    run(&f, "-i in.mp4 -vf subtitles=subs.srt -an out/subbed.mp4");
    run(
        &f,
        "-i in.mp4 -vf '[in]drawtext=textfile=t.txt:fontsize=12[t];movie=logo.png[wm];\
         [t][wm]overlay=4:4[out]' -an out/decorated.mp4",
    );
    assert!(f.data.join("out/subbed.mp4").is_file() && f.data.join("out/decorated.mp4").is_file());

    // HLS into a subfolder, segments named by a pattern, a master playlist beside it.
    let (resolved, _) = run(
        &f,
        "-i in.mp4 -c copy -f hls -hls_time 1 -hls_segment_filename hls/seg_%03d.ts \
         -master_pl_name master.m3u8 hls/index.m3u8",
    );
    assert_eq!(listing(&f.data.join("hls")), ["index.m3u8", "master.m3u8", "seg_000.ts", "seg_001.ts"]);
    let playlist = fs::read_to_string(f.data.join("hls/index.m3u8")).unwrap();
    assert!(playlist.contains("\nseg_000.ts\n"), "{playlist}");
    assert_eq!(resolved.output_side_files(0).len(), 2);

    // Two-pass x264 with a pass log inside the data directory.
    run(&f, "-i in.mp4 -c:v libx264 -b:v 200k -pass 1 -passlogfile logs/x -an -f null -");
    assert!(f.data.join("logs/x-0.log").is_file());
    run(&f, "-i in.mp4 -c:v libx264 -b:v 200k -pass 2 -passlogfile logs/x -an out/2pass.mp4");
    assert!(f.data.join("out/2pass.mp4").is_file());

    // lavfi inputs, a segment list, statistics files written by filters.
    run(
        &f,
        "-f lavfi -i testsrc=duration=1:size=160x120:rate=25 -f lavfi -i sine=duration=1 \
         -shortest out/lavfi.mp4",
    );
    run(&f, "-i in.mp4 -c copy -f segment -segment_time 1 -segment_list seg/list.m3u8 seg/s%03d.ts");
    assert!(f.data.join("seg/list.m3u8").is_file() && f.data.join("seg/s000.ts").is_file());
    run(&f, "-i in.mp4 -i b.mp4 -lavfi [0:v][1:v]psnr=stats_file=logs/psnr.log -f null -");
    assert!(fs::read_to_string(f.data.join("logs/psnr.log")).unwrap().contains("psnr_avg"));
    // DASH with templated segment names beside the manifest.
    run(
        &f,
        "-i in.mp4 -c copy -f dash -init_seg_name 'init-$RepresentationID$.m4s' \
         -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' dash/a.mpd",
    );
    assert!(f.data.join("dash/init-0.m4s").is_file());
    // Loudness analysis.
    let (_, log) = run(&f, "-i in.mp4 -af loudnorm=print_format=json -f null -");
    assert!(log.contains("\"input_i\""), "{log}");

    // Nothing was written outside the data directory.
    assert_eq!(listing(&f.outside), ["img001.png", "secret.txt", "seg.ts"]);
}

/// What the refusals prevent, shown with the real ffmpeg: without the sandbox these commands
/// read outside the data directory or reach for the network; the sandbox's rewritten or
/// refused forms do not.
#[test]
fn refusals_matter_with_ffmpeg() {
    let f = fixture();
    media(&f);
    let outside = f.outside.display().to_string();
    let data = f.data.display().to_string();

    // A planted HLS playlist (named `.txt`, found by probing) naming a file outside.
    fs::write(
        f.data.join("pl.txt"),
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{outside}/seg.ts\n#EXT-X-ENDLIST\n"),
    )
    .unwrap();
    let (ok, err) =
        ffmpeg_str(&f.data, &["-v", "verbose", "-protocol_whitelist", "file", "-i", "pl.txt", "-f", "null", "-"]);
    assert!(ok && err.contains(&format!("Opening '{outside}/seg.ts'")), "{err}");
    let resolved = resolve(&f.sandbox, "-i pl.txt -f null -").unwrap();
    let (ok, err) = ffmpeg(&f.data, &resolved.to_ffmpeg_args());
    assert!(!ok && err.contains("Format not on whitelist"), "{err}");
    assert!(!err.contains("seg.ts"), "{err}");

    // The same playlist through the movie filter: its own demuxer gets the whitelists too.
    let (ok, err) = ffmpeg_str(
        &f.data,
        &["-v", "verbose", "-f", "lavfi", "-i", "movie=pl.txt", "-frames:v", "1", "-f", "null", "-"],
    );
    assert!(ok && err.contains("seg.ts"), "{err}");
    let resolved = resolve(&f.sandbox, "-f lavfi -i movie=pl.txt -frames:v 1 -f null -").unwrap();
    let (ok, err) = ffmpeg(&f.data, &resolved.to_ffmpeg_args());
    assert!(!ok && err.contains("Format not on whitelist"), "{err}");

    // A planted DASH manifest named like a subtitle file: the subtitles filter demuxes it by its
    // content, without the inputs' whitelists, and requests its BaseURL. ffmpeg 5.1.9 itself
    // limits a local manifest's segments to `file,crypto,data`; through `subfile:` the sandbox
    // makes that `file` whatever the build. (Port 9 on localhost: nothing is sent.)
    fs::write(
        f.data.join("mpd.srt"),
        "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\" type=\"static\" \
         mediaPresentationDuration=\"PT2S\" minBufferTime=\"PT1S\"><Period><AdaptationSet \
         mimeType=\"text/vtt\"><Representation id=\"1\" bandwidth=\"100\"><BaseURL>\
         http://127.0.0.1:9/meta.vtt</BaseURL></Representation></AdaptationSet></Period></MPD>\n",
    )
    .unwrap();
    let (_, err) = ffmpeg_str(
        &f.data,
        &[
            "-v",
            "verbose",
            "-i",
            "in.mp4",
            "-vf",
            &format!("subtitles={data}/mpd.srt"),
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ],
    );
    assert!(err.contains("DASH request for url 'http://127.0.0.1:9/meta.vtt'"), "{err}");
    assert!(!err.contains("not on whitelist 'file'!"), "{err}");
    let resolved = resolve(&f.sandbox, "-i in.mp4 -vf subtitles=mpd.srt -frames:v 1 -f null -").unwrap();
    let (ok, err) = ffmpeg(&f.data, &resolved.to_ffmpeg_args());
    assert!(!ok && err.contains("Protocol 'http' not on whitelist 'file'!"), "{err}");

    // A glob through a symlink that leads outside: ffmpeg reads the outside image.
    let (ok, err) = ffmpeg_str(&f.data, &["-v", "verbose", "-f", "image2", "-i", "ln%*/img%*.png", "-f", "null", "-"]);
    assert!(ok && err.contains("Input #0, image2"), "{err}");
    assert_eq!(
        resolve(&f.sandbox, "-f image2 -i 'ln%*/img%*.png' -f null -").err().map(|e| e.0),
        Some(RuleId::GlobPattern.as_str().to_owned())
    );

    // drawtext renders any file it can open; the sandbox refuses the outside one.
    let (ok, err) = ffmpeg_str(
        &f.data,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("color=s=160x40:d=1,drawtext=textfile={outside}/secret.txt"),
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ],
    );
    assert!(ok, "{err}");
    let line = format!("-f lavfi -i color=s=160x40:d=1,drawtext=textfile={outside}/secret.txt -f null -");
    assert_eq!(resolve(&f.sandbox, &line).err().map(|e| e.0), Some(RuleId::AbsolutePath.as_str().to_owned()));

    // hls_fmp4_init_filename and master_pl_name are joined to the playlist's directory by
    // ffmpeg itself: `..` in them escapes (so the sandbox refuses `..`).
    let (ok, err) = ffmpeg_str(
        &f.data,
        &[
            "-i",
            "in.mp4",
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-master_pl_name",
            "../../master-escaped.m3u8",
            &format!("file:{data}/hls/x.m3u8"),
        ],
    );
    assert!(ok, "{err}");
    let escaped = f.data.parent().unwrap().join("master-escaped.m3u8");
    assert!(escaped.is_file());
}

// ---------------------------------------------------------------------------------------------
// The tables against the installed ffmpeg.

fn ffmpeg_output(args: &[&str]) -> String {
    let output = Process::new("ffmpeg")
        .arg("-hide_banner")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg is installed (CI installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Names from `ffmpeg -demuxers`/`-muxers`/`-devices` (lines ` DE name desc` after ` --`), for
/// lines whose flags contain `flag`.
fn format_names(listing: &str, flag: char) -> Vec<String> {
    listing
        .lines()
        .skip_while(|line| line.trim() != "--")
        .skip(1)
        .filter_map(|line| {
            let flags = line.get(..3)?;
            let name = line.get(3..)?.split_whitespace().next()?;
            flags.contains(flag).then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn every_ffmpeg_option_has_a_rule() {
    let p = Policy::default();
    let missing: Vec<&str> = Command::known_option_names().filter(|name| p.option_rule(name).name() == "*").collect();
    assert!(missing.is_empty(), "options without a rule: {missing:?}");
}

#[test]
fn every_demuxer_and_device_is_classified() {
    let p = Policy::default();
    let demuxers = format_names(&ffmpeg_output(&["-demuxers"]), 'D');
    assert!(demuxers.len() > 300, "{demuxers:?}");
    for names in &demuxers {
        let first = names.split(',').next().unwrap_or_default();
        assert!(p.input_format_rule(first).is_some(), "demuxer {names} has no rule");
    }
    // Every allowed name is a real demuxer (else the whitelist would hold a typo).
    let real: BTreeSet<&str> = demuxers.iter().flat_map(|n| n.split(',')).collect();
    for name in p.input_format_whitelist().split(',') {
        assert!(real.contains(name), "{name} is not a demuxer of this ffmpeg");
    }
    // Devices: only lavfi may be used as an input; no output device is allowed.
    let devices = ffmpeg_output(&["-devices"]);
    for names in format_names(&devices, 'D') {
        let first = names.split(',').next().unwrap_or_default();
        let allowed = p.input_format_rule(first).is_some_and(|r| r.is_allowed());
        assert_eq!(allowed, first == "lavfi", "input device {names}");
    }
    for names in format_names(&devices, 'E') {
        for name in names.split(',') {
            assert!(p.output_format_rule(name).is_some_and(|r| !r.is_allowed()), "output device {name}");
        }
    }
}

/// One filter's options as `ffmpeg -h full` lists them: `(name, type, help)` in order.
/// `(option name, type, help text)`.
type OptionLine = (String, String, String);

fn filter_sections(help: &str) -> Vec<(String, Vec<OptionLine>)> {
    let start = help.find("\nAVFilter AVOptions:").unwrap_or(0);
    let mut sections: Vec<(String, Vec<OptionLine>)> = Vec::new();
    for line in help[start..].lines() {
        if let Some(name) = line.strip_suffix(" AVOptions:") {
            sections.push((name.to_owned(), Vec::new()));
        } else if line.starts_with("   ") && !line.starts_with("    ") {
            // Options have 3 spaces of indentation, their named constants more.
            let mut words = line.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let _flags = words.next();
            let text: Vec<&str> = words.collect();
            if let Some((_, options)) = sections.last_mut() {
                options.push((name.to_owned(), kind.to_owned(), text.join(" ")));
            }
        }
    }
    sections
}

/// Does the `-h full` section title (`(a)movie`, `ametadata`, `scale(2ref)`,
/// `acompressor/sidechaincompress`) cover the filter `name`?
fn section_covers(title: &str, name: &str) -> bool {
    title.split('/').any(|part| {
        part == name || part.strip_prefix("(a)").is_some_and(|rest| rest == name || format!("a{rest}") == name)
    })
}

/// Every checked filter option exists under that name (and aliases) at that position, as
/// `process_options()` counts positions: options in declaration order, aliases (same type and
/// help as the option before) and constants skipped.
#[test]
fn filter_option_rules_match_ffmpeg() {
    let help = ffmpeg_output(&["-h", "full"]);
    let sections = filter_sections(&help);
    let p = Policy::default();
    let mut checked = 0;
    for rule in p.filter_rules() {
        let FilterTreatment::Checked(checks) = rule.treatment() else {
            continue;
        };
        let Some((_, options)) = sections.iter().find(|(t, _)| section_covers(t, rule.name())) else {
            panic!("no `-h full` section for filter {}", rule.name());
        };
        // Shorthand positions: the first of each run of same-type-and-help options.
        let mut positions: Vec<(String, Option<usize>)> = Vec::new();
        let mut next = 0;
        let mut previous: Option<(&str, &str)> = None;
        for (name, kind, text) in options {
            let alias = previous == Some((kind.as_str(), text.as_str()));
            positions.push((name.clone(), (!alias).then_some(next)));
            if !alias {
                next += 1;
            }
            previous = Some((kind, text));
        }
        for check in *checks {
            let found = positions.iter().find(|(n, _)| n == check.option);
            let Some((_, position)) = found else {
                panic!("filter {} has no option {}", rule.name(), check.option);
            };
            if check.position.is_some() {
                assert_eq!(check.position, *position, "position of {} option {}", rule.name(), check.option);
            }
            for alias in check.aliases {
                assert!(
                    positions.iter().any(|(n, p)| n == alias && p.is_none()),
                    "filter {} alias {alias}",
                    rule.name()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked}");
}

/// Every filter option whose name says it is a file, a model, a plugin or a socket is covered:
/// the filter is refused, or the option is checked.
#[test]
fn every_file_like_filter_option_is_covered() {
    let help = ffmpeg_output(&["-h", "full"]);
    let p = Policy::default();
    // By name or by help text; `xfade_opencl`'s `kernel` names a kernel inside `source`.
    let file_like = |filter: &str, option: &str, text: &str| {
        let text = text.to_ascii_lowercase();
        let by_name = option.contains("file") || option.ends_with("_path");
        let by_text =
            ["file", "path", "model", "plugin", "library", "address", "director"].iter().any(|w| text.contains(w));
        (by_name || by_text) && !(filter == "xfade_opencl" && option == "kernel")
    };
    let mut uncovered = Vec::new();
    for (title, options) in filter_sections(&help) {
        for (option, kind, text) in &options {
            if kind != "<string>" || !file_like(&title, option, text) {
                continue;
            }
            let names: Vec<String> = title
                .split('/')
                .flat_map(|part| match part.strip_prefix("(a)") {
                    Some(rest) => vec![rest.to_owned(), format!("a{rest}")],
                    None => vec![part.trim_end_matches("(2ref)").to_owned()],
                })
                .collect();
            for name in names {
                let rule = p.filter_rule(&name);
                let covered = match rule.treatment() {
                    FilterTreatment::Forbidden => true,
                    FilterTreatment::Checked(checks) => {
                        checks.iter().any(|c| c.option == option || c.aliases.contains(&option.as_str()))
                    }
                    _ => false,
                };
                // Bitstream filters and other non-filter classes after the filters section
                // have no filter rule; only report names that are filters.
                if !covered && help.contains(&format!("\n{name} AVOptions:")) {
                    uncovered.push(format!("{name} {option}"));
                }
            }
        }
    }
    assert!(uncovered.is_empty(), "file-like filter options without a rule: {uncovered:?}");
}

/// The movie filter's `format_opts`, injected by the sandbox, is refused from clients; the
/// `subtitles` file goes through `subfile:`.
#[test]
fn special_filter_checks() {
    let p = Policy::default();
    let FilterTreatment::Checked(movie) = p.filter_rule("movie").treatment() else {
        panic!("movie is checked");
    };
    assert!(movie.iter().any(|c| c.check == FilterOptionCheck::SandboxWhitelists));
    let FilterTreatment::Checked(subtitles) = p.filter_rule("subtitles").treatment() else {
        panic!("subtitles is checked");
    };
    assert_eq!(subtitles[0].check, FilterOptionCheck::SubtitlesFile);
}

// ---------------------------------------------------------------------------------------------
// Arbitrary values.

/// Strings made of the pieces that matter to graphs, dictionaries and paths.
fn tricky() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop::collection::vec(
        prop_oneof![
            Just("subtitles"),
            Just("movie"),
            Just("drawtext"),
            Just("textfile"),
            Just("f"),
            Just("="),
            Just(":"),
            Just(","),
            Just(";"),
            Just("["),
            Just("]"),
            Just("'"),
            Just("\\"),
            Just("/"),
            Just(".."),
            Just("lnk"),
            Just("name"),
            Just("stats"),
            Just(" "),
            Just("é"),
            Just("%*"),
        ],
        0..16,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Whatever the values, checking never panics, and every file it accepts is inside the data
/// directory.
#[test]
fn arbitrary_values_never_escape() {
    use proptest::prelude::*;
    let f = fixture();
    let root = f.sandbox.root().to_path_buf();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
    let result = runner.run(&(tricky(), 0..6usize), |(value, slot)| {
        let args: Vec<String> = match slot {
            0 => vec!["-i", "in.mp4", "-vf", &value, "out.mp4"],
            1 => vec!["-f", "lavfi", "-i", &value, "out.mp4"],
            2 => vec!["-i", "in.mp4", "-x264-params", &value, "out.mp4"],
            3 => vec!["-i", "in.mp4", "-f", "segment", "-segment_format_options", &value, "s%d.ts"],
            4 => vec!["-i", "in.mp4", "-f", "hls", "-var_stream_map", &value, "hls/%v.m3u8"],
            _ => vec!["-i", "in.mp4", "-f", "hls", "-master_pl_name", &value, "hls/i.m3u8"],
        }
        .into_iter()
        .map(str::to_owned)
        .collect();
        let Ok(command) = Command::from_args(args) else {
            return Ok(());
        };
        if let Ok(resolved) = f.sandbox.resolve_command(&command) {
            for file in resolved.option_files() {
                prop_assert!(file.path().as_path().starts_with(&root));
            }
            let _ = resolved.to_ffmpeg_args();
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// HLS variant streams (issue 8 point 6): an output named with `%v` reaches ffmpeg as a plain
/// absolute path (the muxer creates `%v` directories only for those), and every variant's
/// names are resolved, so a variant directory that is a symlink leading out is refused.
#[test]
fn hls_variant_names_are_resolved_per_variant_and_passed_as_plain_paths() {
    let f = fixture();
    let s = &f.sandbox;
    let pre = "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4";
    assert_eq!(
        rewritten(
            s,
            "-i in.mp4 -f hls -var_stream_map 'v:0 v:1' -master_pl_name m.m3u8 \
             -hls_segment_filename hls/%v/s%03d.ts hls/%v/i.m3u8"
        ),
        format!(
            "{pre} -f hls -var_stream_map 'v:0 v:1' -master_pl_name m.m3u8 -hls_segment_filename \
             $DATA/hls/%v/s%03d.ts -protocol_whitelist file $DATA/hls/%v/i.m3u8"
        )
    );
    // `%v` in the file name of an HLS output is a variant name too; for other muxers it is
    // literal, and their outputs stay `file:` URLs.
    assert_eq!(
        rewritten(s, "-i in.mp4 -f hls -var_stream_map v:0 hls/i_%v.m3u8"),
        format!("{pre} -f hls -var_stream_map v:0 -protocol_whitelist file $DATA/hls/i_%v.m3u8")
    );
    assert_eq!(
        rewritten(s, "-i in.mp4 -f mp4 out/%v.mp4"),
        format!("{pre} -f mp4 -protocol_whitelist file file:$DATA/out/%v.mp4")
    );
    assert_eq!(rewritten(s, "-i in.mp4 hls/i.m3u8"), format!("{pre} -protocol_whitelist file $DATA/hls/i.m3u8"));

    // A variant directory, or a named variant's, that leads outside.
    symlink("../../outside", f.data.join("hls/1")).unwrap();
    symlink("../lnk", f.data.join("hls/lo")).unwrap();
    for (line, position, expected) in [
        (
            "-i in.mp4 -f hls -var_stream_map 'v:0 v:1' hls/%v/i.m3u8",
            7,
            "argument 7 `hls/%v/i.m3u8`: variant stream `hls/1/i.m3u8`: path escapes the data directory",
        ),
        (
            "-i in.mp4 -f hls -var_stream_map 'v:0,name:hi v:1,name:lo' -hls_segment_filename hls/%v/s%d.ts \
             hls/x_%v.m3u8",
            7,
            "argument 7 `-hls_segment_filename hls/%v/s%d.ts`: option `-hls_segment_filename`: variant \
             stream `hls/lo/s%d.ts`: path escapes the data directory",
        ),
    ] {
        let (rule, at, message) = resolve(s, line).unwrap_err();
        assert_eq!((rule.as_str(), at, message.as_str()), (RuleId::PathEscapes.as_str(), position, expected), "{line}");
    }
    // Variants that stay inside resolve.
    assert!(resolve(s, "-i in.mp4 -f hls -var_stream_map 'v:0,name:hi' hls/%v/i.m3u8").is_ok());
}

/// `-pattern_type glob` (issue 8 point 5): `*`, `?`, `[...]` in the file name are accepted;
/// braces, backslashes, wildcards in directories and dot-file patterns are refused; matches
/// are checked one by one; ffmpeg gets the numbered sequence the caller made.
#[test]
fn glob_inputs_are_checked_and_reach_ffmpeg_as_a_sequence() {
    let f = fixture();
    let s = &f.sandbox;
    for (line, rule, position) in [
        ("-pattern_type glob -i 'hls/{../../x,y}.png' out/a.mp4", RuleId::GlobPattern, 4),
        ("-pattern_type glob -i 'hls/\\*.png' out/a.mp4", RuleId::GlobPattern, 4),
        ("-pattern_type glob -i 'hl*/x.png' out/a.mp4", RuleId::GlobPattern, 4),
        ("-pattern_type glob -i 'hls/.*.png' out/a.mp4", RuleId::GlobPattern, 4),
        ("-pattern_type glob -i '/etc/*.conf' out/a.mp4", RuleId::AbsolutePath, 4),
        ("-pattern_type glob -i '../outside/*.txt' out/a.mp4", RuleId::PathEscapes, 4),
        ("-pattern_type glob -i 'lnk/*.txt' out/a.mp4", RuleId::PathEscapes, 4),
        ("-pattern_type glob -i 'file:hls/*.png' out/a.mp4", RuleId::Protocol, 4),
        ("-pattern_type glob_sequence -i 'hls/%*.png' out/a.mp4", RuleId::ForbiddenValue, 1),
        ("-i 'hls/%*.png' out/a.mp4", RuleId::GlobPattern, 2),
        // An output the pattern may match.
        ("-pattern_type glob -i 'thumbs/*.png' thumbs/x.png", RuleId::OutputOverwritesInput, 5),
    ] {
        let (got, at, message) = resolve(s, line).unwrap_err();
        assert_eq!((got.as_str(), at), (rule.as_str(), position), "{line}: {message}");
    }
    let (_, _, message) = resolve(s, "-pattern_type glob -i 'hls/{a,b}.png' out/a.mp4").unwrap_err();
    assert_eq!(
        message,
        "argument 4 `hls/{a,b}.png`: glob patterns may use `*`, `?` and `[...]` in the file name only: \
         braces are not allowed (ffmpeg's glob expands `{a,b}` to several paths, `..` included)"
    );

    // Matches: sorted by bytes, dot-files left out, each resolved (a symlink leading out is refused).
    for name in ["b.png", "a.png", "B.png", ".hidden.png", "c.jpg"] {
        fs::write(f.data.join("thumbs").join(name), "x").unwrap();
    }
    let mut resolved = resolve(s, "-framerate 30 -pattern_type glob -i 'thumbs/[a-z]*.png' out/a.mp4").unwrap();
    let (index, glob) = resolved.glob_inputs().next().unwrap();
    let names = listing(&f.data.join("thumbs"));
    let matches = s.glob_matches(glob, names.clone(), 4).unwrap();
    let relative: Vec<_> = matches.iter().map(|m| m.relative().display().to_string()).collect();
    assert_eq!(relative, ["thumbs/a.png", "thumbs/b.png"]);
    let all = resolve(s, "-pattern_type glob -i 'thumbs/*.png' out/a.mp4").unwrap();
    let (_, all_glob) = all.glob_inputs().next().unwrap();
    let relative: Vec<_> =
        s.glob_matches(all_glob, names, 4).unwrap().iter().map(|m| m.relative().display().to_string()).collect();
    assert_eq!(relative, ["thumbs/B.png", "thumbs/a.png", "thumbs/b.png"]);
    symlink("../../outside/secret.txt", f.data.join("thumbs/c.png")).unwrap();
    let error = s.glob_matches(all_glob, listing(&f.data.join("thumbs")), 4).unwrap_err();
    assert_eq!(error.rule(), RuleId::PathEscapes);
    assert_eq!(error.to_string(), "argument 4 `thumbs/*.png`: match `thumbs/c.png`: path escapes the data directory");

    // Unexpanded, the pattern reaches ffmpeg as a `file:` URL (which matches nothing); expanded,
    // as the caller's sequence.
    let pre = "-framerate 30 -pattern_type glob";
    assert_eq!(
        rewritten(s, "-framerate 30 -pattern_type glob -i 'thumbs/*.png' out/a.mp4"),
        format!(
            "{pre} -protocol_whitelist file -format_whitelist $FORMATS -i 'file:$DATA/thumbs/*.png' \
             -protocol_whitelist file file:$DATA/out/a.mp4"
        )
    );
    resolved.set_glob_sequence(index, PathBuf::from("/run/g"), "png".to_owned());
    let args = resolved.to_ffmpeg_args();
    let at = args.iter().position(|a| a == "-i").unwrap();
    assert_eq!(
        args[..=at + 1].join(" ").replace(&f.sandbox.policy().input_format_whitelist(), "$FORMATS"),
        format!(
            "{pre} -protocol_whitelist file -format_whitelist $FORMATS -pattern_type sequence -start_number 0 \
             -i file:/run/g/%06d.png"
        )
    );
}
