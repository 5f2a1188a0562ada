//! `polymodal shard`: a manifest written as WebDataset-style tar shards.

use std::path::PathBuf;

use polymodal::Result;
use polymodal::train::{read_manifest, shards::write_shards};

/// Write the samples of a manifest as tar shards (WebDataset layout: one
/// sample's files grouped by key, a `json` member with its id and label),
/// to train from (`[data] train = "DIR/PREFIX-{000000..000009}.tar"`) or to
/// split a large collection into independent jobs. Prints the shards'
/// brace pattern.
#[derive(clap::Args)]
pub struct Shard {
    /// The JSONL or CSV manifest.
    manifest: PathBuf,
    /// Folder the shards are written to.
    #[arg(long)]
    out: PathBuf,
    /// Samples per shard.
    #[arg(long, default_value_t = 1000)]
    per_shard: usize,
    /// Shard file names start with this.
    #[arg(long, default_value = "shard")]
    prefix: String,
}

impl Shard {
    /// Writes the shards.
    pub fn run(self) -> Result<()> {
        let entries = read_manifest(&self.manifest)?;
        let written = write_shards(&entries, &self.out, &self.prefix, self.per_shard)?;
        eprintln!(
            "{} samples in {} shards",
            written.samples,
            written.shards.len()
        );
        println!("{}", written.pattern);
        Ok(())
    }
}
