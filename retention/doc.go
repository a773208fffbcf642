// Package retention computes how long evidence must be kept, places and
// releases legal holds, and purges what has expired and is not held.
package retention
