//! Command-line interface: subcommands and flags (here), and one module per one-shot subcommand
//! ([`decode`], [`check_config`], [`publish`]); `mqimg run` is the daemon's.

pub mod check_config;
pub mod decode;
pub mod publish;

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

use crate::frame::chunks::Mode;
use crate::frame::payload::{Detected, Encoding};

/// Exit status when the input was rejected (its failure record is on stdout).
pub const EXIT_REJECTED: u8 = 1;
/// Exit status for usage and I/O errors (clap's convention).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "mqimg",
    version,
    about = "Camera frames over MQTT → validated images and JSON records"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: subscribe, decode, store frames, publish records.
    Run {
        /// Config file (TOML); `MQIMG__SECTION__KEY` environment variables override it.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Decode one payload from a file (or stdin) and print its record as one JSON line.
    Decode(DecodeArgs),
    /// Validate a config file and print the effective config (passwords masked).
    CheckConfig {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the default config as TOML.
    PrintDefaultConfig,
    /// Publish image files to a broker as a camera would.
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// How the payload is wrapped.
    #[arg(
        long,
        default_value_t = Encoding::Auto,
        value_parser = one_of::<Encoding>(&Encoding::ALL.map(Encoding::name)),
    )]
    pub encoding: Encoding,
    /// The JSON envelope field holding the image (default: probe the usual names).
    #[arg(long)]
    pub json_field: Option<String>,
    /// Write the frame here; the extension picks the format (.jpg, .png, .ppm).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Config file whose `[decode]` limits apply (defaults without it).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The payload file; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Broker URL, `mqtt://host:port`.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Topic to publish on; with --chunks, the frame's topic (start-data-end and topic-index parts
    /// go below it).
    #[arg(long)]
    pub topic: String,
    /// How each file is wrapped. With --chunks: how start-data-end and until-eoi pieces are sent (raw
    /// or base64); json-parts data is always base64, topic-index and header-blocks blocks always raw.
    #[arg(
        long,
        default_value_t = Detected::Base64,
        value_parser = one_of::<Detected>(&PUBLISH_ENCODINGS.map(Detected::name)),
    )]
    pub encoding: Detected,
    /// MQTT QoS (0, 1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// How many times to publish each file.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Messages per second (default: as fast as the broker takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Client id (default: `mqimg-publish-<pid>`).
    #[arg(long)]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub chunking: ChunkArgs,
    /// Image files to publish, in turn.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// How `mqimg publish` splits each file over many messages, as small cameras do.
#[derive(Clone, Debug, clap::Args)]
pub struct ChunkArgs {
    /// Split each file over many messages in this convention (README, "Chunked frames"); frames are
    /// numbered from 0 (the json-parts `id`, the topic-index `{frame_id}`).
    #[arg(
        long,
        default_value_t = Mode::None,
        value_parser = one_of::<Mode>(&Mode::ALL.map(Mode::name)),
    )]
    pub chunks: Mode,
    /// Bytes of the file per message.
    #[arg(long, default_value_t = DEFAULT_CHUNK_BYTES)]
    pub chunk_bytes: usize,
    /// Send frames two at a time, their messages alternating: two frame ids on the topic
    /// (json-parts, topic-index), else two cameras (the second on TOPIC-2).
    #[arg(long)]
    pub interleave: bool,
}

/// `--chunk-bytes` by default: a page, well inside any firmware's MQTT buffer but PubSubClient's.
pub const DEFAULT_CHUNK_BYTES: usize = 4096;

impl Default for ChunkArgs {
    /// No chunks: each file in one message.
    fn default() -> Self {
        Self {
            chunks: Mode::None,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            interleave: false,
        }
    }
}

/// How `mqimg publish` can wrap an image, in the order `--help` lists them: the default first.
const PUBLISH_ENCODINGS: [Detected; 4] = [
    Detected::Base64,
    Detected::Raw,
    Detected::DataUri,
    Detected::Json,
];

/// A parser for a flag taking one of `names`: clap refuses any other value, listing `names` (as `--help`
/// does), before `FromStr` runs. The frame module's types stay free of clap.
fn one_of<T>(names: &[&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    PossibleValuesParser::new(names.iter().copied()).try_map(|name| name.parse::<T>())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from([&["mqimg"], args].concat()).map(|cli| cli.command)
    }

    #[test]
    fn encoding_flags_take_the_kebab_case_names() {
        for encoding in Encoding::ALL {
            let Command::Decode(args) = parse(&["decode", "--encoding", encoding.name()]).unwrap()
            else {
                panic!("not decode")
            };
            assert_eq!(args.encoding, encoding);
        }
        for encoding in Detected::ALL {
            let args = [
                "publish",
                "--topic",
                "t",
                "--encoding",
                encoding.name(),
                "f.jpg",
            ];
            let Command::Publish(args) = parse(&args).unwrap() else {
                panic!("not publish")
            };
            assert_eq!(args.encoding, encoding);
        }
        let Command::Decode(args) = parse(&["decode"]).unwrap() else {
            panic!("not decode")
        };
        assert_eq!(args.encoding, Encoding::Auto);
        let Command::Publish(args) = parse(&["publish", "--topic", "t", "f.jpg"]).unwrap() else {
            panic!("not publish")
        };
        assert_eq!(args.encoding, Detected::Base64);
        assert!(parse(&["decode", "--encoding", "data_uri"]).is_err());
        assert!(parse(&["publish", "--topic", "t", "--encoding", "auto", "f.jpg"]).is_err());
    }

    #[test]
    fn publish_takes_chunk_modes_by_name() {
        for mode in Mode::ALL {
            let args = ["publish", "--topic", "t", "--chunks", mode.name(), "f.jpg"];
            let Command::Publish(args) = parse(&args).unwrap() else {
                panic!("not publish")
            };
            assert_eq!(args.chunking.chunks, mode);
            assert_eq!(args.chunking.chunk_bytes, DEFAULT_CHUNK_BYTES);
        }
        let args = [
            "publish",
            "--topic",
            "t",
            "--chunks",
            "topic-index",
            "--chunk-bytes",
            "256",
            "--interleave",
            "f.jpg",
        ];
        let Command::Publish(args) = parse(&args).unwrap() else {
            panic!("not publish")
        };
        assert_eq!(args.chunking.chunk_bytes, 256);
        assert!(args.chunking.interleave);
        let Command::Publish(args) = parse(&["publish", "--topic", "t", "f.jpg"]).unwrap() else {
            panic!("not publish")
        };
        assert_eq!(args.chunking.chunks, Mode::None);
        assert!(parse(&["publish", "--topic", "t", "--chunks", "json_parts", "f.jpg"]).is_err());
    }
}
