package main

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFraming(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out))
	require.Contains(t, out.String(), fmt.Sprintf("length-prefixed: %q", messages))
	require.Contains(t, out.String(), fmt.Sprintf("delimited:       %q", messages))
}

func TestLengthPrefixLimit(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteLengthPrefixed(&b, make([]byte, 100)))
	_, err := ReadLengthPrefixed(&b, 10)
	require.Error(t, err)
}
