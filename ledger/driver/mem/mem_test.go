package mem_test

import (
	"testing"

	"github.com/custode/custode/ledger/driver"
	"github.com/custode/custode/ledger/driver/mem"
	"github.com/custode/custode/ledger/drivertest"
)

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(*testing.T) driver.Driver { return mem.New() }, drivertest.Options{})
}
