package verify

import "time"

// EventDelaySlack is what the delay bound of an event adds to the
// checkpoint interval (export/BUNDLE.md §5): time for the checkpoint to be
// signed and its token to come. The first timestamp that covers an entry
// is at most the checkpoint interval plus EventDelaySlack after its
// riferimento temporale, unless the entry is marked imported.
const EventDelaySlack = 5 * time.Minute
