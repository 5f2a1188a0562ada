//! The commands of the `polymodal` binary, one module each; the arguments
//! several share (device, precision, sample files) are flattened in from
//! [`args`].

mod args;
mod console;
mod demo;
mod devices;
mod embed;
mod eval;
mod retrieve;
mod search;
mod shard;
mod train;
mod transcribe;
mod zero_shot;

use clap::{Parser, Subcommand};

use polymodal::Result;

/// The command line.
#[derive(Parser)]
#[command(
    name = "polymodal",
    version,
    about = "Multimodal machine learning on Burn"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(demo::Demo),
    Generate(demo::Generate),
    Train(train::Train),
    Eval(eval::Eval),
    Predict(eval::Predict),
    Embed(embed::Embed),
    Index(search::Index),
    Retrieve(retrieve::Retrieve),
    Search(search::Search),
    Shard(shard::Shard),
    Transcribe(transcribe::Transcribe),
    ZeroShot(zero_shot::ZeroShot),
    /// List the CPU and the wgpu adapters, with the precisions each supports.
    Devices,
}

impl Cli {
    /// Runs the command given.
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Demo(command) => command.run(),
            Command::Generate(command) => command.run(),
            Command::Train(command) => command.run(),
            Command::Eval(command) => command.run(),
            Command::Predict(command) => command.run(),
            Command::Embed(command) => command.run(),
            Command::Index(command) => command.run(),
            Command::Retrieve(command) => command.run(),
            Command::Search(command) => command.run(),
            Command::Shard(command) => command.run(),
            Command::Transcribe(command) => command.run(),
            Command::ZeroShot(command) => command.run(),
            Command::Devices => devices::run(),
        }
    }
}
