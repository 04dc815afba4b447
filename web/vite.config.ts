// The Ferry web app: a static bundle in dist/, served by the Ferry server at `/`.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, assetsInlineLimit: 4096 },
  server: {
    // `npm run dev` next to a Ferry on :5212.
    proxy: { '/api': { target: 'http://127.0.0.1:5212', changeOrigin: false } },
  },
});
