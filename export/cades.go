package export

import (
	"context"

	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// cadesSigner returns s with its signatures time-stamped by st (CAdES-T,
// tsa.StampSignature) under ctx, or s itself when st or s is nil. s is not
// modified.
func cadesSigner(ctx context.Context, s *smime.Signer, st tsa.Stamper) *smime.Signer {
	if s == nil || st == nil {
		return s
	}
	c := *s
	c.Stamp = func(p7s []byte) ([]byte, error) {
		if s.Stamp != nil {
			var err error
			if p7s, err = s.Stamp(p7s); err != nil {
				return nil, err
			}
		}
		return tsa.StampSignature(ctx, p7s, st)
	}
	return &c
}
