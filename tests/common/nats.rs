//! Real `nats-server`s for the end-to-end tests (Debian's `nats-server`,
//! v2.9.10 on the project's machines).
//!
//! [`NatsServer::start`] runs one server from a [`NatsSetup`]: free loopback
//! ports, a config file generated into a temp dir, JetStream (`store_dir` in
//! that dir), `max_payload`, one of the [`NatsAuth`] modes (user/password,
//! token, nkey, `.creds` with operator/account/user JWTs signed here) and
//! optionally TLS with a CA generated here (mutual TLS with `verify`). It
//! returns once `/healthz` of the monitoring port answers `ok`.
//! [`NatsCluster::start`] runs three such servers as one JetStream cluster.
//!
//! Each server logs into `nats.log` in its directory; start-up failures panic
//! with the log's tail, and a server dropped while its test panics prints
//! the tail to stderr.
//!
//! Not supported by nats-server 2.9.10, so not offered: `handshake_first`
//! (TLS before `INFO`, added in 2.10.4; 2.9.10 refuses the key:
//! "error parsing tls config, unknown field").

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nkeys::KeyPair;
use serde_json::{Value, json};

/// How long a server may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a three-server cluster may take to elect a JetStream meta leader.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the server log shown in panics.
const TAIL_LINES: usize = 40;

/// Path of the `nats-server` binary: `$NATS_SERVER`, `/usr/sbin/nats-server`
/// or the first `nats-server` on `PATH`. Panics (tests fail, they never skip)
/// when there is none.
pub fn nats_server_binary() -> PathBuf {
    let from_env = std::env::var_os("NATS_SERVER").map(PathBuf::from);
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_env
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .chain(from_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found ($NATS_SERVER, /usr/sbin/nats-server, PATH): \
                 the NATS tests need it, install it with `apt-get install nats-server`"
            )
        })
}

/// `n` distinct loopback ports that were free a moment ago (all listeners
/// are held until every port is picked, so none is handed out twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// How clients prove who they are to a test server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// Anyone may connect.
    #[default]
    None,
    /// `authorization { users: [{user, password}] }`.
    UserPassword {
        /// User name.
        user: String,
        /// Its password (plain text in the server config).
        password: String,
    },
    /// `authorization { token }`.
    Token(String),
    /// A user nkey generated for the server; the client signs the server's
    /// nonce with the seed ([`NatsServer::nkey_seed`]).
    Nkey,
    /// Decentralised JWT auth: operator, account and user keys and JWTs are
    /// generated, the server trusts the operator and preloads the account
    /// (`resolver: MEMORY`); clients use a `.creds` file
    /// ([`NatsServer::creds_file`]).
    Creds,
}

/// What a client needs to authenticate as one of a test server's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Nothing.
    None,
    /// User name and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A user nkey seed (`SU…`).
    Nkey {
        /// The seed.
        seed: String,
    },
    /// A `.creds` file (user JWT and seed).
    Creds {
        /// Path of the file.
        file: PathBuf,
    },
}

impl ClientAuth {
    /// Adds these credentials to async-nats options (always through the
    /// options methods: async-nats 0.51 does not send credentials written
    /// into the URL).
    pub fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self {
            ClientAuth::None => options,
            ClientAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            ClientAuth::Token(token) => options.token(token.clone()),
            ClientAuth::Nkey { seed } => options.nkey(seed.clone()),
            ClientAuth::Creds { file } => {
                let text = std::fs::read_to_string(file)
                    .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
                options
                    .credentials(&text)
                    .unwrap_or_else(|e| panic!("bad creds file {}: {e}", file.display()))
            }
        }
    }
}

/// PEM files of a test server's TLS setup, all in its temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate (SANs `127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (extended key usage `clientAuth`).
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
    /// Whether the server demands a client certificate (`verify: true`).
    pub verify: bool,
}

impl TlsFiles {
    /// Adds TLS to async-nats options: trust the CA, require TLS and, when
    /// the server verifies clients, present the client certificate.
    pub fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        let options = options
            .require_tls(true)
            .add_root_certificates(self.ca.clone());
        if self.verify {
            options.add_client_certificate(self.client_cert.clone(), self.client_key.clone())
        } else {
            options
        }
    }
}

/// How to run a test server (builder).
#[derive(Debug, Clone, Default)]
pub struct NatsSetup {
    jetstream: bool,
    max_payload: Option<u64>,
    auth: NatsAuth,
    tls: Option<bool>,
    collector: Option<String>,
}

impl NatsSetup {
    /// A plain server: no JetStream, no auth, no TLS.
    pub fn new() -> NatsSetup {
        NatsSetup::default()
    }

    /// Turns JetStream on or off (its `store_dir` is in the server's temp
    /// dir and survives [`NatsServer::restart`]).
    pub fn jetstream(mut self, on: bool) -> NatsSetup {
        self.jetstream = on;
        self
    }

    /// Sets the server's `max_payload` (bytes).
    pub fn max_payload(mut self, bytes: u64) -> NatsSetup {
        self.max_payload = Some(bytes);
        self
    }

    /// Sets how clients authenticate.
    pub fn auth(mut self, auth: NatsAuth) -> NatsSetup {
        self.auth = auth;
        self
    }

    /// Shorthand for [`NatsAuth::UserPassword`].
    pub fn user_password(self, user: &str, password: &str) -> NatsSetup {
        self.auth(NatsAuth::UserPassword {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Shorthand for [`NatsAuth::Token`].
    pub fn token(self, token: &str) -> NatsSetup {
        self.auth(NatsAuth::Token(token.to_owned()))
    }

    /// Serves clients over TLS only, with a certificate from a CA generated
    /// for this server ([`NatsServer::ca_file`]).
    pub fn tls(mut self) -> NatsSetup {
        self.tls = Some(false);
        self
    }

    /// Like [`NatsSetup::tls`], and clients must present a certificate signed
    /// by that CA ([`NatsServer::client_cert_file`]).
    pub fn mutual_tls(mut self) -> NatsSetup {
        self.tls = Some(true);
        self
    }

    /// Adds a second user, `collector`, that may only publish to `subject`
    /// (a subject or wildcard pattern) and may not subscribe to anything
    /// ([`NatsServer::collector_auth`]). Needs [`NatsAuth::UserPassword`],
    /// [`NatsAuth::Nkey`] or [`NatsAuth::Creds`].
    pub fn collector(mut self, subject: &str) -> NatsSetup {
        self.collector = Some(subject.to_owned());
        self
    }
}

/// NATS JWTs (decentralised auth), signed with nkeys the way the Go
/// library (`nats-io/jwt/v2`, used by `nsc`) writes them.
pub mod jwt {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use nkeys::KeyPair;
    use serde_json::{Value, json};
    use sha2::Digest as _;

    /// A signed JWT: base64url (no padding) of the header
    /// `{"typ":"JWT","alg":"ed25519-nkey"}`, of the claims, and of the
    /// issuer's ed25519 signature over `header.claims`. `iss` is the
    /// issuer's public key, `iat` now, and `jti` the base32 (no padding)
    /// SHA-512/256 of the standard claims without `jti`, as the Go library
    /// computes it (nats-server does not check it). `nats` holds the
    /// type-specific claims.
    pub fn encode(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
        let iat = super::super::now();
        let iss = issuer.public_key();
        // Go marshals ClaimsData in field order: aud, exp, jti, iat, iss,
        // name, nbf, sub (empty ones omitted), which is this order too.
        let standard = json!({"iat": iat, "iss": iss, "name": name, "sub": subject});
        let digest = sha2::Sha512_256::digest(serde_json::to_vec(&standard).expect("json"));
        let jti = data_encoding::BASE32_NOPAD.encode(&digest);
        let claims = json!({
            "jti": jti,
            "iat": iat,
            "iss": iss,
            "name": name,
            "sub": subject,
            "nats": nats,
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        let signed = format!("{header}.{payload}");
        let signature = issuer.sign(signed.as_bytes()).expect("nkey signature");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The claims of a JWT, unverified (for tests of this module).
    pub fn claims(jwt: &str) -> Value {
        let payload = jwt.split('.').nth(1).expect("JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims")
    }

    /// A self-signed operator JWT naming its system account.
    pub fn operator(operator: &KeyPair, name: &str, system_account: &str) -> String {
        encode(
            operator,
            &operator.public_key(),
            name,
            json!({"system_account": system_account, "type": "operator", "version": 2}),
        )
    }

    /// An account JWT signed by the operator, without limits (`-1`); with
    /// `jetstream`, JetStream is enabled for the account with unlimited
    /// memory, disk, streams and consumers (nats-server enables JetStream
    /// for an account when `mem_storage` or `disk_storage` is not 0).
    pub fn account(operator: &KeyPair, account: &KeyPair, name: &str, jetstream: bool) -> String {
        let js = if jetstream { -1 } else { 0 };
        encode(
            operator,
            &account.public_key(),
            name,
            json!({
                "limits": {
                    "subs": -1, "data": -1, "payload": -1,
                    "imports": -1, "exports": -1, "wildcards": true,
                    "conn": -1, "leaf": -1,
                    "mem_storage": js, "disk_storage": js,
                    "streams": js, "consumer": js
                },
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2
            }),
        )
    }

    /// A user JWT signed by the account. `permissions` (e.g.
    /// `{"pub": {"allow": ["x.>"]}, "sub": {"deny": [">"]}}`) is merged into
    /// the `nats` claims; `None` allows everything.
    pub fn user(
        account: &KeyPair,
        user: &KeyPair,
        name: &str,
        permissions: Option<Value>,
    ) -> String {
        let mut nats = json!({
            "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        });
        if let Some(Value::Object(p)) = permissions {
            for (k, v) in p {
                nats[k] = v;
            }
        }
        encode(account, &user.public_key(), name, nats)
    }

    /// The text of a `.creds` file, in the layout `nsc` writes (its
    /// delimiter lines are five dashes before BEGIN and six around END).
    pub fn creds(jwt: &str, seed: &str) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        )
    }
}

/// Keys of decentralised auth ([`NatsAuth::Creds`]).
#[derive(Debug, Clone)]
struct Trust {
    operator: KeyPair,
    account: KeyPair,
    operator_jwt: String,
    account_jwt: String,
}

/// Everything generated for a server (or cluster) before it starts: the
/// auth/TLS part of its config and what clients need.
#[derive(Debug, Clone)]
struct Access {
    /// Config lines for auth and TLS.
    config: String,
    /// The main user.
    user: ClientAuth,
    /// The publish-only user, if asked for.
    collector: Option<ClientAuth>,
    tls: Option<TlsFiles>,
    trust: Option<Trust>,
    /// Where generated files go.
    dir: PathBuf,
}

/// A NATS config string literal.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

fn path_q(p: &Path) -> String {
    q(&p.display().to_string())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn random_secret() -> String {
    // A user seed is 58 random-looking characters; good enough as a password.
    KeyPair::new_user().seed().expect("seed")[2..26].to_owned()
}

/// Permissions block (server config syntax) of the publish-only user.
fn collector_permissions(subject: &str) -> String {
    format!(
        "permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ deny: [\">\"] }} }}",
        q(subject)
    )
}

impl Access {
    fn generate(setup: &NatsSetup, dir: &Path) -> Access {
        let mut access = Access {
            config: String::new(),
            user: ClientAuth::None,
            collector: None,
            tls: None,
            trust: None,
            dir: dir.to_owned(),
        };
        let collector = setup.collector.as_deref();
        match &setup.auth {
            NatsAuth::None => {
                assert!(
                    collector.is_none(),
                    "a collector user needs user/password, nkey or creds auth"
                );
            }
            NatsAuth::Token(token) => {
                assert!(
                    collector.is_none(),
                    "a collector user needs user/password, nkey or creds auth"
                );
                access.config = format!("authorization {{ token: {} }}\n", q(token));
                access.user = ClientAuth::Token(token.clone());
            }
            NatsAuth::UserPassword { user, password } => {
                let mut users = format!("    {{ user: {}, password: {} }}\n", q(user), q(password));
                if let Some(subject) = collector {
                    let password = random_secret();
                    users.push_str(&format!(
                        "    {{ user: \"collector\", password: {}, {} }}\n",
                        q(&password),
                        collector_permissions(subject)
                    ));
                    access.collector = Some(ClientAuth::UserPassword {
                        user: "collector".to_owned(),
                        password,
                    });
                }
                access.config = format!("authorization {{\n  users: [\n{users}  ]\n}}\n");
                access.user = ClientAuth::UserPassword {
                    user: user.clone(),
                    password: password.clone(),
                };
            }
            NatsAuth::Nkey => {
                let user = KeyPair::new_user();
                let mut users = format!("    {{ nkey: {} }}\n", q(&user.public_key()));
                if let Some(subject) = collector {
                    let c = KeyPair::new_user();
                    users.push_str(&format!(
                        "    {{ nkey: {}, {} }}\n",
                        q(&c.public_key()),
                        collector_permissions(subject)
                    ));
                    access.collector = Some(ClientAuth::Nkey {
                        seed: c.seed().expect("seed"),
                    });
                }
                access.config = format!("authorization {{\n  users: [\n{users}  ]\n}}\n");
                access.user = ClientAuth::Nkey {
                    seed: user.seed().expect("seed"),
                };
            }
            NatsAuth::Creds => {
                let operator = KeyPair::new_operator();
                let account = KeyPair::new_account();
                // JetStream needs a system account in operator mode ("system
                // account not setup" otherwise).
                let system = KeyPair::new_account();
                let operator_jwt = jwt::operator(&operator, "test-operator", &system.public_key());
                let account_jwt = jwt::account(&operator, &account, "TEST", setup.jetstream);
                let system_jwt = jwt::account(&operator, &system, "SYS", false);
                access.config = format!(
                    "operator: {}\nsystem_account: {}\nresolver: MEMORY\n\
                     resolver_preload: {{\n  {}: {}\n  {}: {}\n}}\n",
                    q(&operator_jwt),
                    system.public_key(),
                    account.public_key(),
                    q(&account_jwt),
                    system.public_key(),
                    q(&system_jwt)
                );
                access.trust = Some(Trust {
                    operator,
                    account,
                    operator_jwt,
                    account_jwt,
                });
                access.user = access.mint_creds("user", None);
                if let Some(subject) = collector {
                    access.collector = Some(access.mint_creds(
                        "collector",
                        Some(json!({"pub": {"allow": [subject]}, "sub": {"deny": [">"]}})),
                    ));
                }
            }
        }
        if let Some(verify) = setup.tls {
            let tls = generate_tls(dir, verify);
            access.config.push_str(&format!(
                "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n  timeout: 5\n}}\n",
                path_q(&tls.server_cert),
                path_q(&tls.server_key),
                path_q(&tls.ca),
            ));
            access.tls = Some(tls);
        }
        access
    }

    fn mint_creds(&self, name: &str, permissions: Option<Value>) -> ClientAuth {
        let trust = self
            .trust
            .as_ref()
            .expect("creds can only be minted with NatsAuth::Creds");
        let user = KeyPair::new_user();
        let token = jwt::user(&trust.account, &user, name, permissions);
        let file = self.dir.join(format!("{name}.creds"));
        write(&file, &jwt::creds(&token, &user.seed().expect("seed")));
        ClientAuth::Creds { file }
    }

    fn options(&self) -> async_nats::ConnectOptions {
        let options = self.user.apply(async_nats::ConnectOptions::new());
        match &self.tls {
            Some(tls) => tls.apply(options),
            None => options,
        }
    }
}

/// Generates a CA, a server certificate for `127.0.0.1`/`localhost` and a
/// client certificate, and writes them as PEM into `dir`.
fn generate_tls(dir: &Path, verify: bool) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cc-metrics test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let leaf = |sans: &[&str], name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &*ca).expect("sign certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        &["127.0.0.1", "localhost"],
        "nats-server",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&[], "nats-client", ExtendedKeyUsagePurpose::ClientAuth);
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server-cert.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client-cert.pem"),
        client_key: dir.join("client-key.pem"),
        verify,
    };
    write(&files.ca, &ca.pem());
    write(&files.server_cert, &server_cert);
    write(&files.server_key, &server_key);
    write(&files.client_cert, &client_cert);
    write(&files.client_key, &client_key);
    files
}

/// Why a server did not come up.
#[derive(Debug)]
enum StartError {
    /// Another process took one of its ports meanwhile: retry on others.
    PortTaken,
    /// Anything else, with the log tail.
    Failed(String),
}

/// One `nats-server` process and its files.
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    http_port: u16,
    cluster_port: Option<u16>,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new(name: &str, dir: PathBuf, ports: &[u16]) -> Node {
        std::fs::create_dir_all(&dir).expect("server dir");
        Node {
            name: name.to_owned(),
            port: ports[0],
            http_port: ports[1],
            cluster_port: ports.get(2).copied(),
            config: dir.join("nats.conf"),
            log: dir.join("nats.log"),
            dir,
            child: None,
        }
    }

    /// Writes the config file: ports, JetStream, payload limit, `extra`
    /// (auth, TLS, cluster).
    fn write_config(&self, setup: &NatsSetup, extra: &str) {
        let mut conf = format!(
            "server_name: {}\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n",
            q(&self.name),
            self.port,
            self.http_port
        );
        if let Some(bytes) = setup.max_payload {
            conf.push_str(&format!("max_payload: {bytes}\n"));
        }
        if setup.jetstream {
            conf.push_str(&format!(
                "jetstream {{\n  store_dir: {}\n  max_memory_store: 268435456\n  max_file_store: 1073741824\n}}\n",
                path_q(&self.dir.join("jetstream"))
            ));
        }
        conf.push_str(extra);
        write(&self.config, &conf);
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats log file");
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start nats-server: {e}"));
        self.child = Some(child);
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn monitor_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// GET a monitoring endpoint as JSON.
    fn monitor(&self, path: &str) -> Option<Value> {
        let response = super::http(&self.monitor_addr(), "GET", path, &[], b"").ok()?;
        (response.status == 200)
            .then(|| serde_json::from_slice(&response.body).ok())
            .flatten()
    }

    /// Waits until `/healthz` says `ok` (with JetStream: recovered and, in a
    /// cluster, in contact with the meta leader).
    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), StartError> {
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = self.log_text();
                if log.contains("address already in use") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Failed(format!(
                    "nats-server {} exited ({status}):\n{}",
                    self.name,
                    self.log_tail()
                )));
            }
            if self
                .monitor("/healthz")
                .is_some_and(|v| v["status"] == "ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "nats-server {} not healthy in time; /healthz: {:?}\n{}",
                    self.name,
                    super::http(&self.monitor_addr(), "GET", "/healthz", &[], b"")
                        .map(|r| r.text()),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it takes longer than 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "nats-server {} ({}):\n{}",
                self.name,
                self.port,
                self.log_tail()
            );
        }
        self.kill();
    }
}

fn url(tls: bool, port: u16) -> String {
    let scheme = if tls { "tls" } else { "nats" };
    format!("{scheme}://127.0.0.1:{port}")
}

/// One running `nats-server`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    // Declared before `dir`: the process dies before its files go.
    node: Node,
    access: Access,
    setup: NatsSetup,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Generates keys, certificates and the config, starts the server on
    /// free loopback ports and waits until it is healthy.
    pub fn start(setup: NatsSetup) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let access = Access::generate(&setup, dir.path());
        for _ in 0..5 {
            let mut node = Node::new("nats-0", dir.path().to_owned(), &free_ports(2));
            node.write_config(&setup, &access.config);
            node.spawn();
            match node.wait_healthy(Instant::now() + START_TIMEOUT) {
                Ok(()) => {
                    return NatsServer {
                        node,
                        access,
                        setup,
                        dir,
                    };
                }
                Err(StartError::PortTaken) => {
                    let _ = std::fs::remove_file(&node.log);
                }
                Err(StartError::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("nats-server: no free ports after 5 tries");
    }

    /// `nats://127.0.0.1:<port>`, or `tls://…` with TLS.
    pub fn url(&self) -> String {
        url(self.access.tls.is_some(), self.node.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// `127.0.0.1:<port>` of the monitoring endpoint (`/varz`, `/jsz`, …).
    pub fn monitor_addr(&self) -> String {
        self.node.monitor_addr()
    }

    /// What the server saw, for failure messages: message totals, and every
    /// connection (closed ones too) with its subscriptions and counters.
    pub fn traffic(&self) -> String {
        let varz = self.monitor("/varz").unwrap_or_default();
        format!(
            "server: in_msgs {} out_msgs {} slow_consumers {} connections {}; connections: {}",
            varz["in_msgs"],
            varz["out_msgs"],
            varz["slow_consumers"],
            varz["total_connections"],
            self.monitor("/connz?subs=detail&state=all")
                .map(|v| v.to_string())
                .unwrap_or_default()
        )
    }

    /// GET a monitoring endpoint (`/varz`, `/jsz?streams=true`, …) as JSON;
    /// `None` if the server does not answer 200 with JSON.
    pub fn monitor(&self, path: &str) -> Option<Value> {
        self.node.monitor(path)
    }

    /// The temp dir holding config, log, keys, certificates and JetStream data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        self.node.log_text()
    }

    /// The last lines of the log, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.node.log_tail()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.node.running()
    }

    /// Kills the server with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Starts the server again (stopping it first if it runs) with the same
    /// config, ports and JetStream store, and waits until it is healthy
    /// (JetStream recovered).
    pub fn restart(&mut self) {
        self.node.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.node.spawn();
            match self.node.wait_healthy(deadline) {
                Ok(()) => return,
                // The old process's port may linger for a moment.
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartError::PortTaken) => {
                    panic!("restart: port still taken\n{}", self.node.log_tail())
                }
                Err(StartError::Failed(why)) => panic!("restart: {why}"),
            }
        }
    }

    /// The setup it was started with.
    pub fn setup(&self) -> &NatsSetup {
        &self.setup
    }

    /// Credentials of the main user.
    pub fn client_auth(&self) -> ClientAuth {
        self.access.user.clone()
    }

    /// Credentials of the publish-only `collector` user; panics without
    /// [`NatsSetup::collector`].
    pub fn collector_auth(&self) -> ClientAuth {
        self.access
            .collector
            .clone()
            .expect("no collector user: use NatsSetup::collector")
    }

    /// Options to connect as the main user (credentials, and TLS with the
    /// generated CA and client certificate when TLS is on).
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        self.access.options()
    }

    /// Connects as the main user.
    pub async fn connect(&self) -> async_nats::Client {
        self.connect_options()
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.url(), self.log_tail()))
    }

    /// User name with [`NatsAuth::UserPassword`].
    pub fn user(&self) -> &str {
        match &self.access.user {
            ClientAuth::UserPassword { user, .. } => user,
            other => panic!("not a user/password server: {other:?}"),
        }
    }

    /// Password with [`NatsAuth::UserPassword`].
    pub fn password(&self) -> &str {
        match &self.access.user {
            ClientAuth::UserPassword { password, .. } => password,
            other => panic!("not a user/password server: {other:?}"),
        }
    }

    /// The token with [`NatsAuth::Token`].
    pub fn token(&self) -> &str {
        match &self.access.user {
            ClientAuth::Token(token) => token,
            other => panic!("not a token server: {other:?}"),
        }
    }

    /// The user's nkey seed (`SU…`) with [`NatsAuth::Nkey`].
    pub fn nkey_seed(&self) -> &str {
        match &self.access.user {
            ClientAuth::Nkey { seed } => seed,
            other => panic!("not an nkey server: {other:?}"),
        }
    }

    /// The user's public nkey (`U…`) with [`NatsAuth::Nkey`].
    pub fn nkey_public(&self) -> String {
        KeyPair::from_seed(self.nkey_seed())
            .expect("seed")
            .public_key()
    }

    /// Writes the nkey seed into `user.nk` in the temp dir (the file an
    /// `nkey_file`/seed-file config option points to) and returns its path.
    pub fn write_nkey_seed_file(&self) -> PathBuf {
        let path = self.dir.path().join("user.nk");
        write(&path, &format!("{}\n", self.nkey_seed()));
        path
    }

    /// The main user's `.creds` file with [`NatsAuth::Creds`].
    pub fn creds_file(&self) -> &Path {
        match &self.access.user {
            ClientAuth::Creds { file } => file,
            other => panic!("not a creds server: {other:?}"),
        }
    }

    /// With [`NatsAuth::Creds`]: signs a new user of the account (with
    /// optional permissions in JWT form, e.g.
    /// `{"pub": {"allow": ["a.>"]}, "sub": {"deny": [">"]}}`) and writes its
    /// `<name>.creds` file.
    pub fn mint_creds(&self, name: &str, permissions: Option<Value>) -> PathBuf {
        match self.access.mint_creds(name, permissions) {
            ClientAuth::Creds { file } => file,
            other => unreachable!("{other:?}"),
        }
    }

    /// The operator JWT the server trusts, with [`NatsAuth::Creds`].
    pub fn operator_jwt(&self) -> &str {
        &self.trust().operator_jwt
    }

    /// The account JWT preloaded into the server, with [`NatsAuth::Creds`].
    pub fn account_jwt(&self) -> &str {
        &self.trust().account_jwt
    }

    /// The operator's public key, with [`NatsAuth::Creds`].
    pub fn operator_public_key(&self) -> String {
        self.trust().operator.public_key()
    }

    /// The account's public key, with [`NatsAuth::Creds`].
    pub fn account_public_key(&self) -> String {
        self.trust().account.public_key()
    }

    fn trust(&self) -> &Trust {
        self.access
            .trust
            .as_ref()
            .expect("not a creds server: use NatsAuth::Creds")
    }

    /// Whether the server serves TLS.
    pub fn has_tls(&self) -> bool {
        self.access.tls.is_some()
    }

    /// The TLS files; panics for a server without TLS.
    pub fn tls_files(&self) -> &TlsFiles {
        self.access
            .tls
            .as_ref()
            .expect("TLS is off: use NatsSetup::tls or mutual_tls")
    }

    /// The CA certificate (PEM) with TLS on.
    pub fn ca_file(&self) -> &Path {
        &self.tls_files().ca
    }

    /// The client certificate (PEM) with TLS on.
    pub fn client_cert_file(&self) -> &Path {
        &self.tls_files().client_cert
    }

    /// The client key (PEM) with TLS on.
    pub fn client_key_file(&self) -> &Path {
        &self.tls_files().client_key
    }
}

/// Three `nats-server`s on loopback forming one cluster with JetStream on
/// each (distinct `server_name`, own `store_dir`), so R3 streams work.
/// Killed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    access: Access,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts a plain three-server JetStream cluster.
    pub fn start() -> NatsCluster {
        NatsCluster::start_with(NatsSetup::new())
    }

    /// Starts three servers with `setup` (JetStream is turned on) and waits
    /// until every one is healthy and sees the same JetStream meta leader of
    /// a three-peer meta group.
    pub fn start_with(setup: NatsSetup) -> NatsCluster {
        let setup = setup.jetstream(true);
        let dir = tempfile::tempdir().expect("temp dir");
        let access = Access::generate(&setup, dir.path());
        'attempt: for _ in 0..5 {
            let ports = free_ports(9);
            let mut nodes: Vec<Node> = ports
                .chunks(3)
                .enumerate()
                .map(|(i, p)| Node::new(&format!("nats-{i}"), dir.path().join(format!("n{i}")), p))
                .collect();
            let routes: Vec<String> = nodes
                .iter()
                .map(|n| format!("\"nats-route://127.0.0.1:{}\"", n.cluster_port.unwrap_or(0)))
                .collect();
            for node in &nodes {
                let cluster = format!(
                    "cluster {{\n  name: \"cc-test\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    node.cluster_port.unwrap_or(0),
                    routes.join(", ")
                );
                node.write_config(&setup, &format!("{}{cluster}", access.config));
            }
            for node in &mut nodes {
                node.spawn();
            }
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            for node in &mut nodes {
                match node.wait_healthy(deadline) {
                    Ok(()) => {}
                    Err(StartError::PortTaken) => {
                        for n in &mut nodes {
                            n.kill();
                            let _ = std::fs::remove_dir_all(&n.dir);
                        }
                        continue 'attempt;
                    }
                    Err(StartError::Failed(why)) => panic!("{why}"),
                }
            }
            let cluster = NatsCluster { nodes, access, dir };
            cluster.wait_meta_leader(deadline);
            return cluster;
        }
        panic!("nats cluster: no free ports after 5 tries");
    }

    /// The meta leader every running server reports, once they agree and the
    /// meta group has three peers.
    fn agreed_meta_leader(&self) -> Option<String> {
        let mut leader: Option<String> = None;
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let jsz = node.monitor("/jsz")?;
            let meta = &jsz["meta_cluster"];
            let this = meta["leader"].as_str().filter(|l| !l.is_empty())?;
            if meta["cluster_size"].as_u64() != Some(3) {
                return None;
            }
            match &leader {
                Some(l) if l != this => return None,
                _ => leader = Some(this.to_owned()),
            }
        }
        leader
    }

    fn wait_meta_leader(&self, deadline: Instant) {
        while self.agreed_meta_leader().is_none() {
            if Instant::now() > deadline {
                let jsz: Vec<_> = self.nodes.iter().map(|n| n.monitor("/jsz")).collect();
                let tails: Vec<_> = self.nodes.iter().map(Node::log_tail).collect();
                panic!(
                    "no JetStream meta leader in time; /jsz: {jsz:?}\n{}",
                    tails.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The JetStream meta leader's `server_name` (`nats-<i>`), once the
    /// running servers agree on one.
    pub fn meta_leader(&self) -> Option<String> {
        self.agreed_meta_leader()
    }

    /// Client URLs of the three servers (whether running or not).
    pub fn urls(&self) -> Vec<String> {
        let tls = self.access.tls.is_some();
        self.nodes.iter().map(|n| url(tls, n.port)).collect()
    }

    /// The URLs joined by commas (one string for configs that take a list).
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// Index of the server named `name` (`nats-<i>`), e.g. a stream leader
    /// from `stream.info().cluster.leader`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `127.0.0.1:<port>` of server `i`'s monitoring endpoint.
    pub fn monitor_addr(&self, i: usize) -> String {
        self.nodes[i].monitor_addr()
    }

    /// GET a monitoring endpoint of server `i` as JSON.
    pub fn monitor(&self, i: usize, path: &str) -> Option<Value> {
        self.nodes[i].monitor(path)
    }

    /// The last log lines of server `i`.
    pub fn log_tail(&self, i: usize) -> String {
        self.nodes[i].log_tail()
    }

    /// Kills server `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Stops server `i` with SIGTERM.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts server `i` again (stopping it first if it runs) on the same
    /// ports and store, and waits until it is healthy (back in the cluster,
    /// current with the meta leader).
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.stop();
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            node.spawn();
            match node.wait_healthy(deadline) {
                Ok(()) => break,
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartError::PortTaken) => {
                    panic!("restart: port still taken\n{}", node.log_tail())
                }
                Err(StartError::Failed(why)) => panic!("restart: {why}"),
            }
        }
        self.wait_meta_leader(deadline);
    }

    /// Credentials of the main user.
    pub fn client_auth(&self) -> ClientAuth {
        self.access.user.clone()
    }

    /// The PEM files with TLS on.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.access.tls.as_ref()
    }

    /// Options to connect as the main user (credentials and TLS).
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        self.access.options()
    }

    /// Connects as the main user to any of the servers.
    pub async fn connect(&self) -> async_nats::Client {
        self.connect_options()
            .connect(self.urls().as_slice())
            .await
            .unwrap_or_else(|e| panic!("connect to {:?}: {e}", self.urls()))
    }

    /// The temp dir holding each server's directory (`n0`, `n1`, `n2`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
