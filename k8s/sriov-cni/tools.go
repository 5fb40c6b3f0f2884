//go:build tools

package tools

import _ "github.com/intel/sriov-cni/cmd/sriov"
