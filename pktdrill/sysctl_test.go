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
