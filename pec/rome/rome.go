// Package rome gives the Europe/Rome time zone, in which PEC writes its
// riferimenti temporali and the AgID statistics count days, from the zone
// data compiled into the program: it never depends on the host's
// zoneinfo.
package rome

import (
	"sync"
	"time"
	_ "time/tzdata" // Europe/Rome must not depend on the host's zoneinfo.
)

// Name is the zone's IANA name.
const Name = "Europe/Rome"

// load loads the zone once. It is a lazily computed constant, not mutable
// state: every call returns the same location or the same error.
var load = sync.OnceValues(func() (*time.Location, error) {
	return time.LoadLocation(Name)
})

// Location returns Europe/Rome. The zone data is embedded (time/tzdata), so
// an error means a broken build; callers report it rather than fall back
// to another zone.
func Location() (*time.Location, error) {
	loc, err := load()
	if err != nil {
		return nil, err
	}
	return loc, nil
}
