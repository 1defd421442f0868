# Sourced by the bench scripts, inside a fresh network namespace (unshare -n):
# a veth pair whose two ends are 10.77.0.1 (servers) and 10.77.0.2 (clients).
# Janus will not gather loopback candidates; the veth address satisfies it,
# and no traffic leaves the namespace.
ip link set lo up
ip link add cbv0 type veth peer name cbv1
ip addr add 10.77.0.1/24 dev cbv0
ip addr add 10.77.0.2/24 dev cbv1
ip link set cbv0 up
ip link set cbv1 up
# Both ends are local addresses of this namespace, so the clients' packets to
# 10.77.0.1 go over lo. libnice, though, pins each of Janus's sockets to its
# candidate's interface (IP_UNICAST_IF, cbv0): Janus's packets to 10.77.0.2
# leave through cbv0 and arrive on cbv1 with a local source address, which
# the kernel drops as martian unless accept_local is on. Without this Janus
# hears the clients' ICE checks and answers them, but nothing it sends
# arrives, and no PeerConnection gets past "connecting". (rp_filter off too,
# in case the host's defaults turn it on for new namespaces.)
for dev in all default cbv0 cbv1; do
    sysctl -qw "net.ipv4.conf.$dev.accept_local=1" "net.ipv4.conf.$dev.rp_filter=0"
done
