//! The command line: `run`, `demo`, `import`, `publish`, `migrate`, `config`, `customer`,
//! `bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{shutdown_signal, App};
use crate::clock::Clock;
use crate::config::Settings;
use crate::directory::{parse_customers, parse_staff, ImportReport};
use crate::domain::CustomerId;
use crate::ingest::publish::{event_topic, publish_all};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about = "Outage notification and emergency response dispatcher"
)]
pub struct Cli {
    /// Configuration file layered over the defaults (also FAULTLINE_CONFIG).
    #[arg(long, global = true, env = "FAULTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run,
    /// Start an embedded broker and database, import the samples, play a storm, print decisions.
    Demo(crate::demo::DemoArgs),
    /// Import customers or staff (CSV or GeoJSON), upserting by id.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Publish fault event files to the broker.
    Publish {
        /// JSON files, one event each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Region level of the topic.
        #[arg(long, default_value = "default")]
        region: String,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Coordinators' view and overrides of crew assignments (docs/STAFFING.md).
    Staffing {
        #[command(subcommand)]
        what: crate::staffing::commands::StaffingCommand,
    },
    /// API keys for the HTTP API (docs/API.md): create (the key is shown once), list, revoke.
    Apikey {
        #[command(subcommand)]
        what: ApiKeyCommand,
    },
    /// Print a customer's self-service token (for `/status?customer_id=…&token=…`).
    Token { customer_id: String },
    /// Customers: erase (GDPR Art. 17, or a customer who left; docs/DATA.md, "Erasure").
    Customer {
        #[command(subcommand)]
        what: CustomerCommand,
    },
    /// Measure performance (see docs/PERFORMANCE.md).
    Bench {
        #[command(subcommand)]
        what: crate::bench::BenchWhat,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        /// Who or what uses it (kept in the list and the audit log's key id).
        #[arg(long)]
        name: String,
        /// operator, coordinator or viewer.
        #[arg(long)]
        role: String,
    },
    /// List keys (ids, names, roles; never secrets).
    List,
    /// Revoke a key by its id (the part after `fl_`).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Erase customers by id: their contacts, name, place, preferences, push token and notice
    /// texts at once; their history stays, cut from them by a running daemon within minutes.
    Erase {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Customers: columns of docs/DATA.md.
    Customers { file: PathBuf },
    /// Staff: columns of docs/DATA.md.
    Staff { file: PathBuf },
}

/// Runs a parsed command line. Exit code 3 means an import rejected some rows.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Bench { what } = cli.command {
        crate::telemetry::init("warn", "text");
        return crate::bench::run(what).await.map(|_| ExitCode::SUCCESS);
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Demo(_)) {
        // The demo prints its own story; logs would bury it. rumqttd reports every client
        // disconnect as an error, which is noise on a demo box.
        settings.log.filter = "warn,faultline::ingest=error,rumqttd=off".into();
    }
    crate::telemetry::init(&settings.log.filter, &settings.log.format);
    match cli.command {
        Command::Run => {
            let app = App::build(settings, Clock::System).await?;
            app.start()?.run_until(shutdown_signal()).await;
        }
        Command::Demo(args) => crate::demo::run(args, settings).await?,
        Command::Import { what } => return import(&settings, what).await,
        Command::Publish { files, region } => {
            let mut messages = Vec::new();
            for file in &files {
                let payload = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                messages.push((
                    event_topic(&settings.mqtt.topic, &region, &payload),
                    payload,
                ));
            }
            let n = publish_all(&settings.mqtt, messages).await?;
            println!("published {n} event(s) to {}", settings.mqtt.url);
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!("database is up to date");
        }
        Command::Config => print!("{}", settings.to_masked_toml()),
        Command::Staffing { what } => {
            let store = open_store(&settings).await?;
            let now = chrono::Utc::now().timestamp_millis();
            crate::staffing::commands::run(&store, what, &settings.staffing.call_center, now)
                .await?;
        }
        Command::Apikey { what } => api_keys(&open_store(&settings).await?, what).await?,
        Command::Customer { what } => return customers(&open_store(&settings).await?, what).await,
        Command::Token { customer_id } => {
            let store = open_store(&settings).await?;
            let key = crate::api::selfservice::TokenKey::load(&store).await?;
            println!("{}", key.token(&customer_id));
        }
        Command::Bench { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(
        settings.database.url.expose(),
        settings.database.max_connections,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

async fn import(settings: &Settings, what: ImportWhat) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let now = chrono::Utc::now();
    let (file, rejected, imported) = match &what {
        ImportWhat::Customers { file } => {
            let report = parse_customers(&read(file)?).map_err(anyhow::Error::msg)?;
            store.upsert_customers(&report.rows, now).await?;
            (file, print_errors(file, &report), report.rows.len())
        }
        ImportWhat::Staff { file } => {
            let report = parse_staff(&read(file)?).map_err(anyhow::Error::msg)?;
            store.upsert_staff(&report.rows, now).await?;
            (file, print_errors(file, &report), report.rows.len())
        }
    };
    println!(
        "{}: {imported} imported, {rejected} rejected",
        file.display()
    );
    Ok(if rejected > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn print_errors<T>(file: &Path, report: &ImportReport<T>) -> usize {
    for e in &report.errors {
        eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
    }
    report.errors.len()
}

/// `customer erase`: one line per id; exit code 3 when some id named no customer (the others
/// are erased all the same).
async fn customers(store: &Store, what: CustomerCommand) -> anyhow::Result<ExitCode> {
    let CustomerCommand::Erase { ids } = what;
    let now = chrono::Utc::now().timestamp_millis();
    let mut unknown = 0;
    for raw in &ids {
        let erasure = match CustomerId::parse(raw) {
            Ok(id) => store.erase_customer(&id, now).await?,
            Err(_) => None,
        };
        match erasure {
            None => {
                unknown += 1;
                eprintln!("{raw}: no such customer");
            }
            Some(e) if e.notices_in_flight == 0 => println!("{raw}: erased"),
            Some(e) => println!(
                "{raw}: erased; {} notice(s) in flight, their text is erased once they settle",
                e.notices_in_flight
            ),
        }
    }
    Ok(if unknown > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

async fn api_keys(store: &Store, what: ApiKeyCommand) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    match what {
        ApiKeyCommand::Create { name, role } => {
            let role: crate::api::auth::Role = role.parse().map_err(anyhow::Error::msg)?;
            let key = crate::api::auth::create_key(store, &name, role, now).await?;
            eprintln!(
                "created {} key {} for {name}; it is shown only now:",
                role, key.row.id
            );
            println!("{}", key.key);
        }
        ApiKeyCommand::List => {
            for k in store.api_keys().await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                println!("{:<10} {:<12} {:<8} {}", k.id, k.role, state, k.name);
            }
        }
        ApiKeyCommand::Revoke { id } => {
            if !store.revoke_api_key(&id, now).await? {
                anyhow::bail!("no live key {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
