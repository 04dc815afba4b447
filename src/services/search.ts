// Cloudreve's search URIs (`cloudreve://my/folder?name=report&category=image`): every file
// and folder under the folder, at any depth, that matches all the given filters. Names match
// as Cloudreve matches them: a substring, `"exact part"` in quotes, or a `*` wildcard pattern;
// several names must all match unless `name_op_or`/`use_or` is given.
import { AppError } from '../domain/errors.ts';
import { FILE, FOLDER, type FileRow, type FilesService, type ListOptions } from './files.service.ts';

export interface SearchQuery {
  names: string[];
  anyName: boolean;
  caseFolding: boolean;
  /** the category's extension patterns, any of which must match */
  category: string[] | null;
  type: number | null;
  sizeGte: number | null;
  sizeLte: number | null;
  /** Unix milliseconds */
  createdGte: number | null;
  createdLte: number | null;
  updatedGte: number | null;
  updatedLte: number | null;
}

/** Cloudreve's default category queries (explorer_category_*_query), as extension patterns. */
const CATEGORIES: Record<string, string[]> = {
  image:
    'bmp iff png gif jpg jpeg psd svg webp heif heic tiff avif 3fr ari arw bay braw crw cr2 cr3 cap dcs dcr dng drf eip erf fff gpr iiq k25 kdc mdc mef mos mrw nef nrw obm orf pef ptx pxn r3d raf raw rwl rw2 rwz sr2 srf srw tif x3f'.split(
      ' ',
    ),
  video: 'mp4 m3u8 flv avi wmv mkv rm rmvb mov ogv'.split(' '),
  audio: 'mp3 flac ape wav acc ogg m4a'.split(' '),
  document: 'pdf doc docx ppt pptx xls xlsx csv txt md pub'.split(' '),
};

/** At most this many entries are scanned under the searched folder. */
export const SEARCH_SCAN_LIMIT = 100_000;

function integer(params: URLSearchParams, key: string): number | null {
  const raw = params.get(key);
  if (raw === null) return null;
  if (!/^-?\d{1,15}$/.test(raw)) throw new AppError('PARAM_INVALID', `Invalid search parameter: ${key}`);
  return Number(raw);
}

export function parseSearch(params: URLSearchParams): SearchQuery {
  for (const key of params.keys()) {
    if (key.startsWith('meta_') || key.startsWith('exact_meta_'))
      throw new AppError('PARAM_INVALID', 'Searching by metadata is not supported');
    if (
      ![
        'name',
        'name_op_or',
        'use_or',
        'case_folding',
        'category',
        'type',
        'size_gte',
        'size_lte',
        'created_gte',
        'created_lte',
        'updated_gte',
        'updated_lte',
      ].includes(key)
    )
      throw new AppError('PARAM_INVALID', `Unsupported search parameter: ${key}`);
  }
  const names = params.getAll('name').filter((n) => n.length > 0);
  if (names.some((n) => n.length > 255)) throw new AppError('PARAM_INVALID', 'Search name is too long');
  let category: string[] | null = null;
  const wanted = params.get('category');
  if (wanted !== null) {
    category = CATEGORIES[wanted] ?? null;
    if (!category) throw new AppError('PARAM_INVALID', `Unknown search category: ${wanted}`);
  }
  const typeName = params.get('type');
  if (typeName !== null && typeName !== 'file' && typeName !== 'folder')
    throw new AppError('PARAM_INVALID', 'Invalid search parameter: type');
  const seconds = (key: string) => {
    const n = integer(params, key);
    return n === null ? null : n * 1000;
  };
  return {
    names,
    anyName: params.has('name_op_or') || params.has('use_or'),
    caseFolding: params.has('case_folding'),
    category,
    type: typeName === null ? null : typeName === 'folder' ? FOLDER : FILE,
    sizeGte: integer(params, 'size_gte'),
    sizeLte: integer(params, 'size_lte'),
    createdGte: seconds('created_gte'),
    createdLte: seconds('created_lte'),
    updatedGte: seconds('updated_gte'),
    updatedLte: seconds('updated_lte'),
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** One name filter as Cloudreve applies it. */
export function nameMatches(pattern: string, name: string, caseFolding: boolean): boolean {
  if (pattern.length > 1 && pattern.startsWith('"') && pattern.endsWith('"'))
    return name.includes(pattern.slice(1, -1));
  if (pattern.includes('*')) {
    let body = pattern.split('*').map(escapeRegExp).join('.*');
    // Like Cloudreve: a pattern that neither starts nor ends with a wildcard matches anywhere.
    if (!pattern.startsWith('*') && !pattern.endsWith('*')) body = `.*${body}.*`;
    return new RegExp(`^${body}$`, caseFolding ? 'is' : 's').test(name);
  }
  return caseFolding ? name.toLowerCase().includes(pattern.toLowerCase()) : name.includes(pattern);
}

export function matchesSearch(q: SearchQuery, file: FileRow): boolean {
  if (q.names.length) {
    const hits = q.names.map((n) => nameMatches(n, file.name, q.caseFolding));
    if (q.anyName ? !hits.some(Boolean) : !hits.every(Boolean)) return false;
  }
  if (q.category) {
    if (file.type !== FILE) return false;
    const ext = file.name.includes('.') ? file.name.slice(file.name.lastIndexOf('.') + 1).toLowerCase() : '';
    if (!q.category.includes(ext)) return false;
  }
  if (q.type !== null && file.type !== q.type) return false;
  if (q.sizeGte !== null && file.size < q.sizeGte) return false;
  if (q.sizeLte !== null && file.size > q.sizeLte) return false;
  if (q.createdGte !== null && file.created_at < q.createdGte) return false;
  if (q.createdLte !== null && file.created_at > q.createdLte) return false;
  if (q.updatedGte !== null && file.updated_at < q.updatedGte) return false;
  if (q.updatedLte !== null && file.updated_at > q.updatedLte) return false;
  return true;
}

function offsetFromToken(token: string | undefined): number {
  if (!token) return 0;
  try {
    const d = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { o?: unknown };
    if (typeof d.o === 'number' && Number.isSafeInteger(d.o) && d.o >= 0) return d.o;
  } catch {
    // fall through
  }
  throw new AppError('PARAM_INVALID', 'Invalid next_page_token');
}

export interface SearchPage {
  files: Array<{ file: FileRow; path: string[] }>;
  offset: number;
  pageSize: number;
  total: number;
  nextToken: string | undefined;
}

/** One page of the matches under `folder`, folders first, in the listing's order. */
export async function searchFolder(
  files: FilesService,
  folder: FileRow,
  query: SearchQuery,
  options: ListOptions,
): Promise<SearchPage> {
  const pageSize = Math.min(Math.max(options.pageSize || 100, 1), 2000);
  const offset =
    options.page !== undefined ? options.page * pageSize : offsetFromToken(options.nextPageToken);
  const orderBy = options.orderBy ?? 'name';
  const sign = options.orderDirection === 'desc' ? -1 : 1;
  const all = (await files.walk(folder, SEARCH_SCAN_LIMIT)).filter((e) => matchesSearch(query, e.file));
  all.sort((a, b) => {
    if (a.file.type !== b.file.type) return b.file.type - a.file.type;
    const x = a.file[orderBy];
    const y = b.file[orderBy];
    const c = x < y ? -1 : x > y ? 1 : a.file.id - b.file.id;
    return c * sign;
  });
  const slice = all.slice(offset, offset + pageSize);
  const more = offset + pageSize < all.length;
  return {
    files: slice,
    offset,
    pageSize,
    total: all.length,
    nextToken: more ? Buffer.from(JSON.stringify({ o: offset + pageSize })).toString('base64') : undefined,
  };
}
