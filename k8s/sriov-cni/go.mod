module vfnet.dev/testbed/sriov-cni

go 1.26.0

// sriov-cni v2.1.0 (2019), the only release found on the proxy, under its first path: its code
// imports github.com/intel/sriov-cni/..., so the github.com/k8snetworkplumbingwg path of the
// same release does not build.
require github.com/intel/sriov-cni v2.1.0+incompatible

// The CNI API its code is written against (its glide.yaml names plugins v0.7.4): cni v0.7 drops
// pkg/types/current and the three-argument skel.PluginMain, plugins v0.7.4 needs cni v0.6's
// invoke.DelegateAdd.
require (
	github.com/containernetworking/cni v0.6.0 // indirect
	github.com/containernetworking/plugins v0.7.4 // indirect
)

require (
	github.com/coreos/go-iptables v0.8.0 // indirect
	github.com/onsi/ginkgo v1.16.5 // indirect
	github.com/onsi/gomega v1.44.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
