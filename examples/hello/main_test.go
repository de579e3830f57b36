package main

import "testing"

func TestHello(t *testing.T) {
	tests := []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"name": "Ada"}, "Hello Ada!"},
		{map[string]any{}, "Hello world!"},
		{map[string]any{"name": ""}, "Hello world!"},
		{map[string]any{"name": 42}, "Hello world!"},
	}
	for _, tt := range tests {
		got, err := hello(tt.params)
		if err != nil {
			t.Fatalf("hello(%v): %v", tt.params, err)
		}
		if got["greeting"] != tt.want {
			t.Errorf("hello(%v) = %v, want greeting %q", tt.params, got, tt.want)
		}
	}
}
