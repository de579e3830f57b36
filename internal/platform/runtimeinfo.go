package platform

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// RuntimeInfoFile, in the data directory, records which enclave runtime
// binary the running platform starts, so that `clemmys policy allow`
// (without arguments) measures that file and not another build.
const RuntimeInfoFile = "runtime.json"

// RuntimeInfo is the content of RuntimeInfoFile.
type RuntimeInfo struct {
	Path        string `json:"path"`
	TEE         string `json:"tee"`
	Measurement string `json:"measurement,omitempty"` // sim: the binary's SHA-256 at start
	APIHost     string `json:"apiHost"`
}

func (p *Platform) writeRuntimeInfo() error {
	b, err := json.MarshalIndent(RuntimeInfo{Path: p.cfg.EnclavePath, TEE: p.TEE,
		Measurement: hex.EncodeToString(p.EnclaveMeasurement), APIHost: p.APIHost()}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(p.cfg.DataDir, RuntimeInfoFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("platform: write %s: %w", RuntimeInfoFile, err)
	}
	return os.Rename(path+".tmp", path)
}

// ReadRuntimeInfo reads dataDir's RuntimeInfoFile.
func ReadRuntimeInfo(dataDir string) (*RuntimeInfo, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, RuntimeInfoFile))
	if err != nil {
		return nil, err
	}
	var ri RuntimeInfo
	if len(b) > 64<<10 || json.Unmarshal(b, &ri) != nil || ri.Path == "" {
		return nil, fmt.Errorf("%s in %s is malformed", RuntimeInfoFile, dataDir)
	}
	return &ri, nil
}
