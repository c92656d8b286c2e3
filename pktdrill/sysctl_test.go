package pktdrill

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCubicModuleParameters: tcp_cubic's hystart and hystart_detect,
// written under /sys/module, set Config.HyStart (the delay test); the
// ACK-train test is listed as ignored.
func TestCubicModuleParameters(t *testing.T) {
	linux, err := ProfileConfig("linux")
	require.NoError(t, err)
	require.True(t, linux.HyStart, "Linux's default: hystart=1, hystart_detect=3")
	for _, tc := range []struct {
		cmd     string
		on      bool
		ignored []string
	}{
		{"echo 2 > /sys/module/tcp_cubic/parameters/hystart_detect", true, nil},
		{"echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect", true, []string{"tcp_cubic.hystart_detect (HYSTART_ACK_TRAIN)"}},
		{"echo 1 > /sys/module/tcp_cubic/parameters/hystart_detect", false, []string{"tcp_cubic.hystart_detect (HYSTART_ACK_TRAIN)"}},
		{"echo 0 > /sys/module/tcp_cubic/parameters/hystart", false, nil},
		{"echo 1 > /sys/module/tcp_cubic/parameters/hystart_low_window", true, []string{"tcp_cubic.hystart_low_window"}},
	} {
		r := &runner{cfg: linux}
		require.NoError(t, r.shellText(tc.cmd, 0), tc.cmd)
		require.Equal(t, tc.on, r.cfg.HyStart, tc.cmd)
		require.Equal(t, tc.ignored, r.ignored, tc.cmd)
	}
}

// TestSlowStartAfterIdle: net.ipv4.tcp_slow_start_after_idle, which
// Linux's defaults.sh sets to 0, maps to Config.NoRestartAfterIdle.
func TestSlowStartAfterIdle(t *testing.T) {
	for _, tc := range []struct {
		cmd string
		off bool
	}{
		{"sysctl -q net.ipv4.tcp_slow_start_after_idle=0", true},
		{"sysctl -q net.ipv4.tcp_slow_start_after_idle=1", false},
	} {
		r := &runner{}
		require.NoError(t, r.shellText(tc.cmd, 0), tc.cmd)
		require.Equal(t, tc.off, r.cfg.NoRestartAfterIdle, tc.cmd)
		require.Empty(t, r.ignored, tc.cmd)
	}
}
