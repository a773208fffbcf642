package daticert

import "testing"

func BenchmarkMarshal(b *testing.B) {
	d := exampleModel(0, TipoAvvenutaConsegna, ErroreNessuno)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	doc, err := Marshal(exampleModel(0, TipoAvvenutaConsegna, ErroreNessuno))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}
