//! The `polymodal` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use polymodal::demo::{self, DatasetSize, DemoOptions, Reporter};
use polymodal::device::{Precision, device_from};
use polymodal::train::Progress;
use polymodal::{Modality, Result};

#[derive(Parser)]
#[command(
    name = "polymodal",
    version,
    about = "Multimodal machine learning on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the embedded dataset, train every unimodal model and fusion method, report.
    Demo {
        /// Output folder.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        /// Training epochs per model.
        #[arg(long)]
        epochs: Option<usize>,
        /// cpu, wgpu or wgpu:N (default: $POLYMODAL_DEVICE or cpu).
        #[arg(long)]
        device: Option<String>,
    },
    /// Write the embedded dataset (PNG, WAV, MP4, text, JSONL manifests).
    Generate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Samples per class in train / valid / test.
        #[arg(long, num_args = 3, value_names = ["TRAIN", "VALID", "TEST"], default_values_t = [80, 20, 30])]
        per_class: Vec<usize>,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Train a model described by a TOML experiment file.
    Train {
        /// The experiment (see `polymodal::experiment`).
        #[arg(long)]
        config: PathBuf,
        /// Continue the run saved in the output folder.
        #[arg(long)]
        resume: bool,
        /// cpu, wgpu or wgpu:N (default: $POLYMODAL_DEVICE or cpu).
        #[arg(long)]
        device: Option<String>,
    },
    /// Accuracy of a trained model folder on a JSONL or CSV manifest.
    Eval {
        /// Model folder (model.bpk, model.json).
        #[arg(long)]
        model: PathBuf,
        /// JSONL manifest.
        #[arg(long)]
        manifest: PathBuf,
        /// cpu, wgpu or wgpu:N (default: $POLYMODAL_DEVICE or cpu).
        #[arg(long)]
        device: Option<String>,
        /// f32 or f16 (inference in half precision where the device supports
        /// it; default: $POLYMODAL_PRECISION or f32).
        #[arg(long)]
        precision: Option<String>,
    },
    /// Class probabilities of one sample given as files.
    Predict {
        /// Model folder.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        files: SampleFiles,
        /// cpu, wgpu or wgpu:N.
        #[arg(long)]
        device: Option<String>,
        /// f32 or f16 (inference in half precision where the device supports
        /// it; default: $POLYMODAL_PRECISION or f32).
        #[arg(long)]
        precision: Option<String>,
    },
    /// Embeddings as JSON: with a trained model folder, the fused
    /// representation (the head's input) of one sample given as files; with a
    /// Hugging Face sentence-transformers folder (config.json,
    /// model.safetensors, tokenizer.json), one sentence embedding per TEXT,
    /// one line each.
    Embed {
        /// Model folder.
        #[arg(long)]
        model: PathBuf,
        /// Texts to embed (Hugging Face text models).
        texts: Vec<String>,
        #[command(flatten)]
        files: SampleFiles,
        /// cpu, wgpu or wgpu:N.
        #[arg(long)]
        device: Option<String>,
        /// f32 or f16 (inference in half precision where the device supports
        /// it; default: $POLYMODAL_PRECISION or f32).
        #[arg(long)]
        precision: Option<String>,
    },
    /// List the wgpu adapters.
    Devices,
}

/// One sample given as files, one per modality.
#[derive(clap::Args)]
struct SampleFiles {
    /// A text file.
    #[arg(long)]
    text: Option<PathBuf>,
    /// An image file.
    #[arg(long)]
    image: Option<PathBuf>,
    /// An audio file.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// A video file.
    #[arg(long)]
    video: Option<PathBuf>,
}

impl SampleFiles {
    fn list(self) -> Result<Vec<(Modality, PathBuf)>> {
        let files: Vec<(Modality, PathBuf)> = [
            (Modality::Text, self.text),
            (Modality::Image, self.image),
            (Modality::Audio, self.audio),
            (Modality::Video, self.video),
        ]
        .into_iter()
        .filter_map(|(m, p)| p.map(|p| (m, p)))
        .collect();
        if files.is_empty() {
            return Err(polymodal::Error::Config(
                "give at least one of --text, --image, --audio, --video".into(),
            ));
        }
        Ok(files)
    }
}

/// Progress on a terminal: one bar per model. Elsewhere: one line per epoch.
struct ConsoleReporter {
    bar: Option<(String, ProgressBar)>,
    terminal: bool,
}

impl Reporter for ConsoleReporter {
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some((_, bar)) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn progress(&mut self, model: &str, event: &Progress) {
        match event {
            Progress::Step {
                epoch,
                epochs,
                step,
                steps,
            } if self.terminal => {
                if self.bar.as_ref().is_none_or(|(name, _)| name != model) {
                    if let Some((_, old)) = self.bar.take() {
                        old.finish_and_clear();
                    }
                    let bar =
                        ProgressBar::new((epochs * steps) as u64).with_prefix(model.to_string());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>16} [{bar:30}] {pos}/{len} steps {msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    self.bar = Some((model.to_string(), bar));
                }
                if let Some((_, bar)) = &self.bar {
                    bar.set_position(((epoch - 1) * steps + step) as u64);
                }
            }
            Progress::Epoch(report) => {
                let text = format!(
                    "{model}: epoch {} loss {:.3} valid accuracy {:.3} ({:.1} s)",
                    report.epoch,
                    report.train_loss,
                    report.valid_accuracy,
                    report.elapsed.as_secs_f64()
                );
                match &self.bar {
                    Some((_, bar)) => bar.set_message(text),
                    None => println!("{text}"),
                }
            }
            Progress::Step { .. } => {}
            Progress::Resumed { epoch } => {
                self.line(&format!("{model}: resuming after epoch {epoch}"));
            }
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Demo {
            out,
            epochs,
            device,
        } => {
            training_precision()?;
            let mut options = DemoOptions {
                device: device_from(device.as_deref())?,
                ..DemoOptions::default()
            };
            if let Some(epochs) = epochs {
                options.train.epochs = epochs;
            }
            let terminal = std::io::stdout().is_terminal();
            let mut reporter = ConsoleReporter {
                bar: None,
                terminal,
            };
            let report = demo::run(&out, &options, &mut reporter)?;
            if let Some((_, bar)) = reporter.bar.take() {
                bar.finish_and_clear();
            }
            println!("\n{}", report.markdown());
            println!(
                "results: {}, chart: {}",
                out.join("results.md").display(),
                out.join("accuracy.svg").display()
            );
            // After the table: a failed comparison still shows every result.
            report.outcome()
        }
        Command::Generate {
            out,
            per_class,
            seed,
        } => {
            let size = DatasetSize {
                train: per_class[0],
                valid: per_class[1],
                test: per_class[2],
            };
            let data = demo::synthetic::generate(&out, size, seed)?;
            println!(
                "wrote {}, {}, {}",
                data.train.display(),
                data.valid.display(),
                data.test.display()
            );
            Ok(())
        }
        Command::Eval {
            model,
            manifest,
            device,
            precision,
        } => {
            let device = inference_device(device.as_deref(), precision.as_deref())?;
            let (accuracy, card) = polymodal::evaluate_dir(&model, &manifest, &device)?;
            println!(
                "accuracy {accuracy:.4} ({} classes, modalities {:?})",
                card.classes.len(),
                card.classifier.modalities
            );
            Ok(())
        }
        Command::Train {
            config,
            resume,
            device,
        } => {
            training_precision()?;
            let device = device_from(device.as_deref())?;
            let experiment = polymodal::experiment::Experiment::from_file(&config)?;
            let mut reporter = ConsoleReporter {
                bar: None,
                terminal: std::io::stdout().is_terminal(),
            };
            let report = polymodal::experiment::run(&experiment, &device, resume, &mut |event| {
                reporter.progress("train", &event)
            })?;
            if let Some((_, bar)) = reporter.bar.take() {
                bar.finish_and_clear();
            }
            let best = &report.train.epochs[report.train.best_epoch - 1];
            println!(
                "best epoch {} of {}{}: validation accuracy {:.4}, macro-F1 {:.4}",
                report.train.best_epoch,
                report.train.epochs.len(),
                if report.train.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                },
                best.valid_accuracy,
                best.valid_macro_f1
            );
            match report.test.as_ref().map(|t| (t, &t.multi_label)) {
                Some((_, Some(m))) => println!(
                    "test (multi-label, threshold 0.5): subset accuracy {:.4}, micro-F1 {:.4}, \
                     macro-F1 {:.4}, mAP {:.4}",
                    m.subset_accuracy(),
                    m.micro_f1(),
                    m.macro_f1(),
                    m.mean_average_precision()
                ),
                Some((test, None)) => println!(
                    "test accuracy {:.4}, macro-F1 {:.4}, loss {:.4}",
                    test.accuracy, test.macro_f1, test.loss
                ),
                None => {}
            }
            println!("model folder: {}", report.model_dir.display());
            Ok(())
        }
        Command::Predict {
            model,
            files,
            device,
            precision,
        } => {
            let device = inference_device(device.as_deref(), precision.as_deref())?;
            for (class, probability) in polymodal::predict_files(&model, &files.list()?, &device)? {
                println!("{class}\t{probability:.4}");
            }
            Ok(())
        }
        Command::Embed {
            model,
            texts,
            files,
            device,
            precision,
        } => {
            let device = inference_device(device.as_deref(), precision.as_deref())?;
            let vectors = if model.join("model.json").is_file() {
                if !texts.is_empty() {
                    return Err(polymodal::Error::Config(format!(
                        "{} is a trained polymodal model: give the sample as files \
                         (--text FILE, --image, --audio, --video), not as arguments",
                        model.display()
                    )));
                }
                vec![polymodal::embed_files(&model, &files.list()?, &device)?]
            } else if model.join("config.json").is_file() {
                embed_texts(&model, &texts, &device)?
            } else {
                return Err(polymodal::Error::Config(format!(
                    "{}: neither a polymodal model folder (model.json) nor a Hugging Face \
                     model folder (config.json)",
                    model.display()
                )));
            };
            for vector in vectors {
                println!(
                    "{}",
                    serde_json::to_string(&vector)
                        .map_err(|e| polymodal::Error::Invalid(e.to_string()))?
                );
            }
            Ok(())
        }
        Command::Devices => {
            let names = polymodal::wgpu::adapter_names();
            println!("cpu\tBurn Flex (CPU)");
            if names.is_empty() {
                println!("(no wgpu adapter found)");
            }
            for (i, name) in names.iter().enumerate() {
                // Whether `--precision f16` works there.
                let f16 = if polymodal::wgpu::adapter_supports_f16(i) {
                    "f32, f16"
                } else {
                    "f32"
                };
                println!("wgpu:{i}\t{name}\t{f16}");
            }
            Ok(())
        }
    }
}

/// The device of `--device`, computing in the precision of `--precision`.
fn inference_device(
    device: Option<&str>,
    precision: Option<&str>,
) -> Result<burn::prelude::Device> {
    let precision = Precision::from_flag(precision)?;
    polymodal::device::device_with_precision(device, precision)
}

/// Training (`train`, `demo`) runs in f32: f16 needs f32 master weights and
/// loss scaling, which polymodal does not do.
fn training_precision() -> Result<()> {
    match Precision::from_flag(None)? {
        Precision::F32 => Ok(()),
        Precision::F16 => Err(polymodal::Error::Config(format!(
            "{} = f16 is for inference (eval, predict, embed); training (train, demo) runs in f32",
            polymodal::device::PRECISION_ENV
        ))),
    }
}

/// Sentence embeddings of `texts` with a Hugging Face sentence-transformers
/// folder, one batch.
fn embed_texts(
    dir: &std::path::Path,
    texts: &[String],
    device: &burn::prelude::Device,
) -> Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Err(polymodal::Error::Config(
            "give the texts to embed as arguments: polymodal embed --model DIR \"some text\""
                .into(),
        ));
    }
    let (encoder, _) = polymodal::text::SentenceEncoder::load(dir, device)?;
    let values = encoder
        .embed(texts, device)?
        .try_into_vec_as::<f32>()
        .map_err(|e| polymodal::Error::Invalid(format!("{e:?}")))?;
    Ok(values.chunks(encoder.dim()).map(<[f32]>::to_vec).collect())
}

fn main() -> ExitCode {
    quiet_wayland_probe();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps the driver stack quiet on servers. When wgpu finds no hardware
/// Vulkan adapter (CI's lavapipe is a CPU one) it goes on to probe OpenGL
/// through EGL, whose Wayland client prints "XDG_RUNTIME_DIR is invalid or
/// not set" on every probe when neither that variable nor `WAYLAND_DISPLAY`
/// is set, as on servers and in CI. Without either there is no Wayland
/// session to find, so `WAYLAND_DISPLAY` is pointed at a path that cannot
/// exist: libwayland takes an absolute path as the socket itself, fails to
/// connect without a word, and wgpu goes on as before.
fn quiet_wayland_probe() {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    let wayland_display = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    if runtime_dir || wayland_display {
        return;
    }
    // SAFETY: the first statement of `main`, before any other thread
    // exists that could read the environment concurrently.
    unsafe { std::env::set_var("WAYLAND_DISPLAY", "/dev/null/no-wayland-session") };
}
