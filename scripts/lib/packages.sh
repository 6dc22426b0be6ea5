# shellcheck shell=bash
# The Debian packages weft's scripts use, and the one step that installs them, sourced by
# scripts/demo, scripts/test and scripts/package. Each line: package, a command it must
# provide, and the scripts that need it (demo needs a subset of what the tests need).
# Installing is idempotent: only packages dpkg does not report installed, and whose command
# is not already there, are asked for.

WEFT_PACKAGES='
iproute2        ip              demo test
nftables        nft             demo test
iptables        iptables        test
iputils-ping    ping            demo test
iperf3          iperf3          test
ethtool         ethtool         test
tcpdump         tcpdump         test
busybox-static  busybox         demo test
dnsutils        dig             test
dnsmasq         dnsmasq         test
docker.io       dockerd         demo test
curl            curl            demo test
tar             tar             demo test
procps          sysctl          test
python3         python3         test
chromium        chromium        test
chromium-driver chromedriver    test
prometheus      promtool        test
podman          podman          test
runc            runc            test
containerd      ctr             test
containernetworking-plugins /usr/lib/cni/portmap test
kubernetes-client kubectl       test
haproxy         haproxy         test
'

# The packages a script (`demo`, `test`) needs, one per line.
weft_packages_for() {
    local want=$1 pkg cmd users
    while read -r pkg cmd users; do
        [ -n "$pkg" ] || continue
        case " $users " in *" $want "*) echo "$pkg" ;; esac
    done <<<"$WEFT_PACKAGES"
}

# The command a package must provide once installed.
weft_package_command() {
    local want=$1 pkg cmd users
    while read -r pkg cmd users; do
        [ "$pkg" = "$want" ] && { echo "$cmd"; return 0; }
    done <<<"$WEFT_PACKAGES"
    return 1
}

# Installs (apt-get) those of the given packages that are not installed, then checks that
# each one's command exists. Prints one line on stderr and returns 1 on failure; changes
# nothing when everything is there. WEFT_APT_LOG and WEFT_POLICY_RC are for the unit test.
weft_install_packages() {
    local who=${WEFT_INSTALL_WHO:-weft} log=${WEFT_APT_LOG:-/tmp/weft-apt.log}
    local policy=${WEFT_POLICY_RC:-/usr/sbin/policy-rc.d}
    local p missing=() made_policy=0 status=0 cmd
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            # A command another package already provides (kubectl from Google's kubectl
            # package, say) is not installed again: the two would claim the same file.
            cmd=$(weft_package_command "$p") || cmd=
            if [ -n "$cmd" ] && PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null; then
                continue
            fi
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "$who: installing ${missing[*]} (apt-get)" >&2
        # Packages such as dnsmasq would start their service on the machine; weft starts
        # its own copies inside namespaces, so keep the machine's services off.
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
        fi
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        } >"$log" 2>&1 || status=$?
        if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
        if [ "$status" != 0 ]; then
            tail -n 20 "$log" >&2
            echo "$who: apt-get install ${missing[*]} failed (exit $status; whole log: $log); fix the package source or install them by hand" >&2
            return 1
        fi
    fi
    for p in "$@"; do
        cmd=$(weft_package_command "$p") || cmd=
        [ -n "$cmd" ] || continue
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null; then
            echo "$who: $cmd is missing although $p is installed; reinstall it: apt-get install --reinstall $p" >&2
            return 1
        fi
    done
}
