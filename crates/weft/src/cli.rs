//! The command-line contract (modelled on Weave's; README.md and docs/ describe it),
//! parsed with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weft: a container overlay network. Routers on many hosts form a mesh; containers on
/// any host talk as if they shared one switch.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every weft command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the router on this host and join the peers named.
    Launch(LaunchArgs),
    /// Stop the router (containers stay connected where the kernel keeps state).
    Stop,
    /// Stop the router and remove everything weft made on this host.
    Reset {
        /// Do not hand this peer's address space to others first.
        #[arg(long)]
        force: bool,
    },
    /// Print the version of weft.
    Version,
    /// Add peers to connect to.
    Connect {
        /// Replace the current peers instead of adding to them.
        #[arg(long)]
        replace: bool,
        /// Peers as HOST[:PORT].
        #[arg(value_name = "PEER")]
        peers: Vec<String>,
    },
    /// Stop connecting to peers.
    Forget {
        /// Peers as HOST[:PORT].
        #[arg(value_name = "PEER", required = true)]
        peers: Vec<String>,
    },
    /// Take over the address space of dead peers.
    Rmpeer {
        /// Peer names.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Show the router's state as text (router, or one section).
    Status {
        /// One section only.
        #[arg(value_enum)]
        section: Option<StatusSection>,
    },
    /// Show the router's whole state as JSON.
    Report,
    /// Print the address of the router's topology page, and in a lab how to reach it.
    Ui,
    /// List attached containers and their addresses.
    Ps {
        /// Containers to list (all when none).
        containers: Vec<String>,
    },
    /// Attach a container to the overlay and print its address(es).
    Attach(AttachArgs),
    /// Detach a container from the overlay.
    Detach(TargetArgs),
    /// Give this host an address on the overlay and a route to it.
    Expose {
        /// Addresses (net:default, net:CIDR, ip:CIDR, CIDR).
        #[arg(value_name = "ADDR")]
        addrs: Vec<String>,
        /// Do not masquerade container traffic leaving through this host.
        #[arg(long)]
        without_masquerade: bool,
    },
    /// Remove this host's overlay address(es).
    Hide {
        /// Addresses (net:default, net:CIDR, ip:CIDR, CIDR).
        #[arg(value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Add DNS records: `dns-add [IP...] CONTAINER [-h FQDN]` or `dns-add IP... -h FQDN`.
    #[command(disable_help_flag = true)]
    DnsAdd(DnsEditArgs),
    /// Remove DNS records (same forms as dns-add).
    #[command(disable_help_flag = true)]
    DnsRemove(DnsEditArgs),
    /// Resolve a name through weft's DNS.
    DnsLookup {
        /// Name to look up.
        name: String,
    },
    /// Print the docker run flags that point a container at weft's DNS.
    DnsArgs,
    /// Print the shell commands that point the docker client at weft's proxy.
    Env {
        /// Print the commands that undo it.
        #[arg(long)]
        restore: bool,
    },
    /// Print the docker client flag for weft's proxy.
    Config,
    /// Create, attach and start a Docker container in one step (docker run args follow);
    /// `--service NAME` first (repeatable) makes it a task of that service.
    Run {
        /// [--service NAME]... [ADDR...], then docker run arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Initialise address management now instead of on first use.
    Prime,
    /// weft as a CNI plugin (the binary speaks CNI when a runtime sets CNI_COMMAND).
    Cni {
        /// What to do.
        #[command(subcommand)]
        command: CniCommand,
    },
    /// Services: a virtual IP balanced over tasks on every host, published ports.
    Service {
        /// What to do.
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// A multi-host network on this one machine, in network namespaces.
    Lab {
        /// What to do with the lab.
        #[command(subcommand)]
        command: LabCommand,
    },
}

/// `weft service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service: a virtual IP from IPAM, balanced over its tasks on every host.
    Create(ServiceCreateArgs),
    /// Remove a service (its VIP is released, its rules go on every host).
    Rm {
        /// The service.
        name: String,
    },
    /// List the services: NAME MODE VIP PORTS PUBLISHED TASKS.
    Ls,
    /// Print one service as JSON, with its tasks.
    Inspect {
        /// The service.
        name: String,
    },
}

/// Flags of `weft service create`.
#[derive(Debug, Clone, Args)]
pub struct ServiceCreateArgs {
    /// The service's name (also its DNS name).
    pub name: String,
    /// A port of the VIP, sent to the same port of a task (repeatable).
    #[arg(long = "port", value_name = "PORT[/tcp|/udp]")]
    pub ports: Vec<String>,
    /// A port published on every host, sent to PORT of a task (repeatable).
    #[arg(long, value_name = "HOSTPORT:PORT[/tcp|/udp]")]
    pub publish: Vec<String>,
    /// vip (one balanced virtual IP) or dnsrr (names answer with the tasks).
    #[arg(long, value_name = "vip|dnsrr")]
    pub endpoint_mode: Option<String>,
    /// The subnet the VIP comes from (default: the default subnet).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Health check of each task: tcp, or http:PATH (2xx/3xx is healthy).
    #[arg(long, value_name = "tcp|http:PATH")]
    pub health: Option<String>,
    /// How often the health check runs (500ms, 5s, 1m).
    #[arg(long, value_name = "DUR")]
    pub health_interval: Option<String>,
}

/// `weft cni ...`.
#[derive(Debug, Subcommand)]
pub enum CniCommand {
    /// Put the plugin in the bin dir and write a .conflist naming this router's socket.
    Install(CniInstallArgs),
}

/// `weft cni install`.
#[derive(Debug, Args)]
pub struct CniInstallArgs {
    /// Where runtimes look for plugins.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub bin_dir: PathBuf,
    /// Where runtimes look for network configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub conf_dir: PathBuf,
    /// The network's name (and the conflist's file name).
    #[arg(long, default_value = "weft")]
    pub network: String,
    /// A tenant subnet inside weft's range (default: the router's default subnet).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Reference plugins to chain after weft: portmap, bandwidth, tuning (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "PLUGIN")]
    pub chain: Vec<String>,
    /// The conflist's cniVersion: 1.0.0 suits the runtimes of Debian 12 (podman 4.3,
    /// containerd 1.6); 1.1.0 lets a newer runtime send GC and STATUS.
    #[arg(long, default_value = "1.0.0", value_name = "VERSION")]
    pub cni_version: String,
}

/// Sections of `weft status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusSection {
    /// Addresses being dialled.
    Targets,
    /// This router's connections.
    Connections,
    /// Every peer and its connections.
    Peers,
    /// Address space per peer.
    Ipam,
    /// DNS records.
    Dns,
    /// Services and their tasks.
    Services,
}

/// Flags of `weft launch`.
#[derive(Debug, Clone, Args)]
pub struct LaunchArgs {
    /// Unique peer name (default: created once and kept in WEFT_STATE_DIR).
    #[arg(long)]
    pub name: Option<String>,
    /// Human-friendly name (default: the hostname).
    #[arg(long)]
    pub nickname: Option<String>,
    /// Password that encrypts and authenticates the mesh.
    #[arg(long, env = "WEFT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Subnets whose peers are trusted with unencrypted data (CIDR,..).
    #[arg(long, value_delimiter = ',', value_name = "CIDR,..")]
    pub trusted_subnets: Vec<String>,
    /// Control (TCP) and sleeve (UDP) port.
    #[arg(long, default_value_t = 6783)]
    pub port: u16,
    /// Overlay MTU (default: what fits the underlay).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Never use the kernel VXLAN path.
    #[arg(long)]
    pub no_fastdp: bool,
    /// Range that container addresses come from.
    #[arg(long, value_name = "CIDR")]
    pub ipalloc_range: Option<String>,
    /// Subnet used when a container asks for none.
    #[arg(long, value_name = "CIDR")]
    pub ipalloc_default_subnet: Option<String>,
    /// How the address ring starts: consensus[=N], seed=NAME,.. or observer.
    #[arg(long, value_name = "MODE")]
    pub ipalloc_init: Option<String>,
    /// Do not run the embedded DNS.
    #[arg(long)]
    pub no_dns: bool,
    /// The domain weft's DNS answers.
    #[arg(long, default_value = "weft.local.")]
    pub dns_domain: String,
    /// Do not dial peers learned from gossip.
    #[arg(long)]
    pub no_discovery: bool,
    /// Maximum number of connections.
    #[arg(long, default_value_t = 200)]
    pub conn_limit: u32,
    /// Dial the nodes of the Kubernetes API's node list, and take over the address space of
    /// nodes deleted from it (run in a pod; see docs/kubernetes.md).
    #[arg(long, env = "WEFT_KUBE_PEERS")]
    pub kube_peers: bool,
    /// The Kubernetes API (default: in a pod, KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT);
    /// http:// only to a loopback address, such as a local `kubectl proxy`.
    #[arg(long, value_name = "URL")]
    pub kube_api: Option<String>,
    /// This node's name in the Kubernetes API (default: the hostname); the peer is named after it.
    #[arg(long, value_name = "NAME")]
    pub kube_node: Option<String>,
    /// Seconds between two reads of the Kubernetes node list.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub kube_poll: u64,
    /// Seconds a node deleted from Kubernetes must stay unreachable before its space is taken.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub kube_reclaim_after: u64,
    /// Run the router attached to this terminal instead of in the background.
    #[arg(long)]
    pub foreground: bool,
    /// Peers to connect to, as HOST[:PORT].
    #[arg(value_name = "PEER")]
    pub peers: Vec<String>,
}

/// What `weft attach` and `weft detach` act on: addresses, then the container.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Addresses then, optionally, the container: [ADDR...] (CONTAINER | --netns PATH | --pid PID).
    #[arg(value_name = "ADDR")]
    pub args: Vec<String>,
    /// Path of the network namespace (e.g. /run/netns/NAME).
    #[arg(long, conflicts_with = "pid")]
    pub netns: Option<PathBuf>,
    /// A process in the network namespace.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Flags of `weft attach`.
#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Interface name inside the container.
    #[arg(long, default_value = "ethwe")]
    pub ifname: String,
    /// Name to register in DNS.
    #[arg(long, value_name = "FQDN")]
    pub hostname: Option<String>,
    /// Do not register the hostname in DNS.
    #[arg(long)]
    pub without_dns: bool,
    /// Join this service as a task (repeatable).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
}

/// Arguments of `weft dns-add` / `weft dns-remove`.
#[derive(Debug, Clone, Args)]
pub struct DnsEditArgs {
    /// IP addresses and/or a container.
    #[arg(value_name = "IP|CONTAINER")]
    pub args: Vec<String>,
    /// Fully qualified name.
    #[arg(short = 'h', long = "hostname", value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// `weft lab` subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create hosts LAB-h1..hN in network namespaces, joined by an underlay.
    Up {
        /// Number of hosts.
        #[arg(long, default_value_t = 3)]
        hosts: u32,
        /// Lab name (prefix of everything it makes).
        #[arg(long, default_value = "weftlab")]
        name: String,
        /// Run a dockerd on every host.
        #[arg(long)]
        docker: bool,
    },
    /// Run a command on a lab host with that host's WEFT_* environment.
    Exec {
        /// Host (h1 or LAB-h1).
        host: String,
        /// Lab name.
        #[arg(long, default_value = "weftlab")]
        name: String,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Make a network-namespace "container" on a host and attach it to that host's router.
    Container {
        /// Host (h1 or LAB-h1).
        host: String,
        /// Container name (also its DNS name).
        container: String,
        /// Addresses (net:default, net:CIDR, ip:CIDR, CIDR).
        #[arg(value_name = "ADDR")]
        addrs: Vec<String>,
        /// Lab name.
        #[arg(long, default_value = "weftlab")]
        name: String,
        /// Join this service as a task (repeatable).
        #[arg(long = "service", value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Remove everything a lab made, also after a crash.
    Down {
        /// Lab name.
        #[arg(long, default_value = "weftlab")]
        name: String,
    },
    /// List the labs on this machine.
    List,
}
