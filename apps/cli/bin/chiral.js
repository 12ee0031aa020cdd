#!/usr/bin/env node
// The built CLI lives in dist/; `npm install` builds it (root `prepare`).
import "../dist/main.js"
