package clinical

import (
	"os"
	"testing"

	"github.com/tufota/tufota/e2e"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
