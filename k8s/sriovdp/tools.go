//go:build tools

package tools

import _ "github.com/k8snetworkplumbingwg/sriov-network-device-plugin/cmd/sriovdp"
