package httpapi_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/custode/custode/export/httpapi"
)

// A token file gives each operator, auditor or legal user the SHA-256 of
// their bearer tokens: the token itself is handed to the user once and
// never stored.
func ExampleParseTokens() {
	// token, err := httpapi.NewToken() makes a random one.
	token := "k4Xq2pR8vN1sT7wY3zB6cD9fG0hJ5mL"
	line := httpapi.TokenLine("olga", token)
	fmt.Println(line)

	tokens, err := httpapi.ParseTokens(strings.NewReader("# operators\n" + line + "\n"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tokens.Len())
	// Output:
	// olga ae0cf77efd61eb2de7317d436783aa002881836261eea2f17626bc73576e8a7b
	// 1
}
