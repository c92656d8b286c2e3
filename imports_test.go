package tcpfsm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The packages each layer may import. The state machine (this package)
// does no I/O, reads no clock, starts no goroutine and keeps no global
// state; tcpstack reaches the state machine only through its exported
// API, as any host does (the compiler sees to that, this to the rest).
var allowedImports = map[string][]string{
	".": {"crypto/rand", "encoding/binary", "errors", "fmt", "math", "math/bits", "net/netip", "strconv",
		"strings", "time", "github.com/tcpfsm/tcpfsm/internal/siphash"},
	"ip":      {"encoding/binary", "errors", "math/bits", "net/netip"},
	"ipstack": {"errors", "net/netip", "github.com/tcpfsm/tcpfsm", "github.com/tcpfsm/tcpfsm/ip"},
	"tcpstack": {"crypto/rand", "encoding/binary", "errors", "hash/maphash", "io", "math/bits", "net/netip",
		"iter", "slices", "time", "github.com/tcpfsm/tcpfsm",
		"github.com/tcpfsm/tcpfsm/internal/siphash"},
}

// TestLayersImportOnlyWhatTheyMay fails if a layer's code imports a package
// outside its list, and if any of these sans-I/O layers starts a goroutine
// or reads the clock (time enters as a value; clock.go has the clocks
// hosts read).
func TestLayersImportOnlyWhatTheyMay(t *testing.T) {
	for dir, allowed := range allowedImports {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		seen := 0
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, name, nil, 0)
			require.NoError(t, err)
			seen++
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				require.True(t, slices.Contains(allowed, path), "%s imports %s, which its layer may not", name, path)
			}
			if dir == "." && filepath.Base(name) == "clock.go" { // the hosts' clocks
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.GoStmt:
					t.Errorf("%s: a sans-I/O layer starts a goroutine", fset.Position(x.Pos()))
				case *ast.SelectorExpr:
					if id, ok := x.X.(*ast.Ident); ok && id.Name == "time" && (x.Sel.Name == "Now" || x.Sel.Name == "Since" || x.Sel.Name == "Sleep") {
						t.Errorf("%s: a sans-I/O layer reads the clock (time.%s)", fset.Position(x.Pos()), x.Sel.Name)
					}
				}
				return true
			})
		}
		require.NotZero(t, seen, "no code found in %s", dir)
	}
}
